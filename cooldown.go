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

// cooldowns remembers, per host, until when the server asked to be left
// alone. Every request to such a host, first attempts of new requests
// included, waits until then (see the loop). Its table keeps at most
// MaxHosts hosts, forgetting the idlest. The success path costs one atomic
// load while no cooldown runs, and a look-up without lock or allocation
// while one does.
type cooldowns struct {
	origin time.Time // the monotonic base of the ends below
	// hosts holds each host's cooldown end, in ns since origin; 0 when it
	// has no cooldown running.
	hosts hostTable[atomic.Int64]
	// active counts the ends that are set and not yet seen to be over.
	active atomic.Int32
}

func newCooldowns() *cooldowns { return &cooldowns{origin: time.Now()} }

// left returns how long host still cools down (0: it does not), reading
// the clock through now only when the host has a cooldown set. A cooldown
// found over is cleared.
func (cs *cooldowns) left(host string, now func() time.Time) time.Duration {
	if cs == nil || cs.active.Load() == 0 {
		return 0
	}
	e := cs.hosts.peek(host)
	if e == nil {
		return 0
	}
	end := e.Load()
	if end == 0 {
		return 0
	}
	if d := time.Duration(end) - now().Sub(cs.origin); d > 0 {
		return d
	}
	if e.CompareAndSwap(end, 0) {
		cs.active.Add(-1)
	}
	return 0
}

// hold records that host asked at now to be left alone for d. A later end
// than the one recorded wins; an earlier one changes nothing.
func (cs *cooldowns) hold(host string, now time.Time, d time.Duration) {
	if cs == nil || d <= 0 {
		return
	}
	end := int64(now.Sub(cs.origin) + d)
	e := cs.hosts.get(host)
	for {
		old := e.Load()
		if old >= end {
			return
		}
		if e.CompareAndSwap(old, end) {
			if old == 0 {
				cs.active.Add(1)
			}
			return
		}
	}
}

// cooldownJitter spreads the requests that waited for one cooldown's end
// over up to a tenth of the cooldown (at most a second), so that they do
// not all come back in the same instant. random is in [0, 1).
func cooldownJitter(left time.Duration, random float64) time.Duration {
	return time.Duration(random * float64(min(left/10, time.Second)))
}
