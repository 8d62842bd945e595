package retry

import (
	"context"
	"errors"
	"sync"
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

// maxCooldownHosts bounds the hosts a Transport remembers as cooling down.
// Only hosts whose cooldown has not ended take a place; when every place is
// taken by a running cooldown, a new one is not recorded (its requests
// still honour their own Retry-After).
const maxCooldownHosts = 1024

// cooldowns remembers, per host, until when the server asked to be left
// alone. Every request to such a host, first attempts of new requests
// included, waits until then (see the loop). The success path costs one
// atomic load while no host cools down, and one map look-up while some
// other host does.
type cooldowns struct {
	origin time.Time    // the monotonic base of the ends below
	hosts  sync.Map     // host → *atomic.Int64: the cooldown's end, in ns since origin
	n      atomic.Int32 // entries in hosts
	mu     sync.Mutex   // serializes inserts and clean-ups
}

func newCooldowns() *cooldowns { return &cooldowns{origin: time.Now()} }

// left returns how long host still cools down at now (0: it does not). A
// cooldown found over is forgotten.
func (cs *cooldowns) left(host string, now func() time.Time) time.Duration {
	if cs == nil || cs.n.Load() == 0 {
		return 0
	}
	v, ok := cs.hosts.Load(host)
	if !ok {
		return 0
	}
	end := v.(*atomic.Int64)
	d := time.Duration(end.Load()) - now().Sub(cs.origin)
	if d > 0 {
		return d
	}
	cs.mu.Lock()
	if time.Duration(end.Load()) <= now().Sub(cs.origin) && cs.hosts.CompareAndDelete(host, v) {
		cs.n.Add(-1)
	}
	cs.mu.Unlock()
	return 0
}

// hold records that host asked at now to be left alone for d. A later end
// than the one recorded wins; an earlier one changes nothing.
func (cs *cooldowns) hold(host string, now time.Time, d time.Duration) {
	if cs == nil || d <= 0 {
		return
	}
	end := int64(now.Sub(cs.origin) + d)
	v, ok := cs.hosts.Load(host)
	if !ok {
		cs.mu.Lock()
		if v, ok = cs.hosts.Load(host); !ok {
			if cs.n.Load() >= maxCooldownHosts {
				cs.forgetEnded(now)
			}
			if cs.n.Load() >= maxCooldownHosts {
				cs.mu.Unlock()
				return
			}
			v = new(atomic.Int64)
			cs.hosts.Store(host, v)
			cs.n.Add(1)
		}
		cs.mu.Unlock()
	}
	e := v.(*atomic.Int64)
	for {
		old := e.Load()
		if old >= end || e.CompareAndSwap(old, end) {
			return
		}
	}
}

// forgetEnded drops the cooldowns that are over at now. cs.mu must be held.
func (cs *cooldowns) forgetEnded(now time.Time) {
	at := int64(now.Sub(cs.origin))
	cs.hosts.Range(func(k, v any) bool {
		if v.(*atomic.Int64).Load() <= at && cs.hosts.CompareAndDelete(k, v) {
			cs.n.Add(-1)
		}
		return true
	})
}

// cooldownJitter spreads the requests that waited for one cooldown's end
// over up to a tenth of the cooldown (at most a second), so that they do
// not all come back in the same instant. random is in [0, 1).
func cooldownJitter(left time.Duration, random float64) time.Duration {
	return time.Duration(random * float64(min(left/10, time.Second)))
}
