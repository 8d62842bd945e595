package retry

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// ErrHostCoolingDown is matched by the error of a request that a Transport
// did not send because its host asked, with a 429 or 503 and a
// Retry-After, to be left alone for longer than the request's deadline
// allows. That error matches context.DeadlineExceeded too. See
// WithHostCooldown.
var ErrHostCoolingDown = errors.New("retry: host is cooling down")

// errCoolingPastDeadline is the Cause of the *Error of a request that gave
// up because its host's cooldown would outlast its deadline.
var errCoolingPastDeadline error = &causeError{cause: ErrHostCoolingDown, err: context.DeadlineExceeded}

// probeWindow is how long, once a host's cooldown is over, one request
// (the probe) has the host to itself: the others wait that much longer for
// its answer. If the probe is answered with another 429 or 503 with a
// Retry-After, the cooldown goes on and nobody else went; if it is answered
// otherwise, the cooldown is cleared. Without a probe, every request held
// during the cooldown would come back at its end at once, to a server
// that may well still be down.
const probeWindow = 100 * time.Millisecond

// A SharedCooldown is a RetryBudget that also shares host cooldowns (see
// WithHostCooldown) among the processes of a fleet, so that a Retry-After
// seen by one holds off the others too; redisbudget.Budget is one. When a
// Transport's budget implements it, the Transport
//
//   - tells it of every cooldown it starts, through HoldOff, with the end
//     (a time.Now reading plus the Retry-After);
//   - asks CoolingUntil before each attempt, first attempts of new
//     requests included, and treats an end still to come like one of its
//     own: the request waits for it, with the same jitter, and one request
//     of this Transport probes the host when it ends (see WithHostCooldown).
//
// Both methods run on requests' paths: they must be safe for concurrent
// use and return at once, without I/O, and CoolingUntil should not
// allocate. host is the request's URL.Host, never a path, query or header.
// WithHostCooldown(false) turns both off. Do has no cooldowns and calls
// neither.
type SharedCooldown interface {
	RetryBudget
	// HoldOff records that host asked, with a 429 or 503 and a
	// Retry-After, to be left alone until until.
	HoldOff(host string, until time.Time)
	// CoolingUntil returns until when host is to be left alone, as far as
	// the budget knows; the zero Time when it is not. An end already past
	// is ignored.
	CoolingUntil(host string) time.Time
}

// cooldowns remembers, per host, until when the server asked to be left
// alone. Every request to such a host, first attempts of new requests
// included, waits until then (see the loop); then one request probes the
// host (see probeWindow). Its table keeps at most MaxHosts hosts,
// forgetting the idlest. The success path costs one atomic load while no
// cooldown runs, and a look-up without lock or allocation while one does.
type cooldowns struct {
	origin time.Time // the monotonic base of the ends below
	// hosts holds each host's cooldown state: 0 when none runs, else its
	// end in ns since origin, shifted left by one, with the low bit set
	// while a probe has the host (see cooldownState).
	hosts hostTable[atomic.Int64]
	// active counts the hosts whose state is not 0.
	active atomic.Int32
}

// cooldownState packs a cooldown's end and whether it is a probe's window.
func cooldownState(end time.Duration, probing bool) int64 {
	s := int64(end) << 1
	if probing {
		s |= 1
	}
	return s
}

func newCooldowns() *cooldowns { return &cooldowns{origin: time.Now()} }

// left returns how long a request to host must still wait (0: it may go),
// reading the clock through now only when the host has a cooldown. The
// first request to find a cooldown over becomes its probe: it may go, and
// the others wait probeWindow more.
func (cs *cooldowns) left(host string, now func() time.Time) time.Duration {
	e := cs.entry(host)
	if e == nil {
		return 0
	}
	for {
		st := e.Load()
		if st == 0 {
			return 0
		}
		at := now().Sub(cs.origin)
		if d := time.Duration(st>>1) - at; d > 0 {
			return d
		}
		if e.CompareAndSwap(st, cooldownState(at+probeWindow, true)) {
			return 0 // this request is the probe
		}
	}
}

// entry returns host's cooldown state, or nil when no cooldown can concern
// it; while no host cools down, that costs one atomic load.
func (cs *cooldowns) entry(host string) *atomic.Int64 {
	if cs == nil || cs.active.Load() == 0 {
		return nil
	}
	return cs.hosts.peek(host)
}

// remaining returns how long host still cools down (0: not at all), like
// left but without claiming a probe: for planning a wait, not for going.
func (cs *cooldowns) remaining(host string, now func() time.Time) time.Duration {
	e := cs.entry(host)
	if e == nil {
		return 0
	}
	st := e.Load()
	if st == 0 {
		return 0
	}
	return max(time.Duration(st>>1)-now().Sub(cs.origin), 0)
}

// hold records that host asked at now to be left alone for d. A later end
// than the one recorded wins (and ends a probe's window); an earlier one
// changes nothing.
func (cs *cooldowns) hold(host string, now time.Time, d time.Duration) {
	if cs == nil || d <= 0 {
		return
	}
	cs.holdUntil(host, now.Sub(cs.origin)+d)
}

// learn records a cooldown of host until until that a SharedCooldown
// reports, as hold does; an end already past changes nothing.
func (cs *cooldowns) learn(host string, until time.Time) {
	if end := until.Sub(cs.origin); end > time.Since(cs.origin) {
		cs.holdUntil(host, end)
	}
}

// holdUntil records that host is to be left alone until end (since
// cs.origin); see hold.
func (cs *cooldowns) holdUntil(host string, end time.Duration) {
	e := cs.hosts.get(host)
	for {
		old := e.Load()
		if old != 0 && time.Duration(old>>1) >= end {
			return
		}
		if e.CompareAndSwap(old, cooldownState(end, false)) {
			if old == 0 {
				cs.active.Add(1)
			}
			return
		}
	}
}

// answered records that a request to host got an answer that asks for no
// cooldown: if it was a probe's, the host is back, and its cooldown is
// cleared. (An answer to a request sent before the cooldown began says
// nothing about the end of it: a running cooldown is left as it is.)
func (cs *cooldowns) answered(host string) {
	if e := cs.entry(host); e != nil {
		if st := e.Load(); st&1 == 1 && e.CompareAndSwap(st, 0) {
			cs.active.Add(-1)
		}
	}
}

// cooldownJitter spreads the requests that waited for one cooldown's end
// over up to a tenth of the cooldown (at most a second), so that they do
// not all come back in the same instant. random is in [0, 1).
func cooldownJitter(left time.Duration, random float64) time.Duration {
	return time.Duration(random * float64(min(left/10, time.Second)))
}
