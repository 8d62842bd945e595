package retry

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a Budget's zero fields.
const (
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 10.0
	DefaultBudgetWindow       = 10 * time.Second
)

// ErrBudgetExhausted is the Cause of the *Error returned when the retry
// budget denied a retry of a failed attempt that ended in an error. (When
// the attempt got a response, that response is returned as it is.)
var ErrBudgetExhausted = errors.New("retry: retry budget exhausted")

// A RetryBudget decides whether a retry may be spent, from what it is told
// of the calls that use it. WithBudget installs one; *Budget is this
// package's implementation, and another (a budget shared by a fleet
// through a store) can replace it. The contract, like net/http's
// CookieJar's:
//
//   - The loop calls Started once per call (a Transport's RoundTrip, a Do),
//     before its first attempt; Attempted after each attempt that was not
//     cut short by the caller's context; and AllowRetry before each retry,
//     only when every other rule (attempts, deadline, Retry-After) allows
//     it. A true answer spends one retry; the retry is then made after
//     its wait, unless the caller's context ends during the wait. An
//     attempt that could not be made (nothing sent) is not reported.
//   - host is the destination, the request's URL.Host for a Transport
//     ("api.example.com", "10.0.0.7:8443"), and "" for Do. It never holds
//     a path, a query or a header.
//   - Implementations must be safe for concurrent use and return at once:
//     they run on every request's path, so they must not block on I/O and
//     should not allocate.
type RetryBudget interface {
	// Started records that a call to host starts.
	Started(host string)
	// Attempted records how an attempt to host ended: failed is true when
	// it failed in a way worth retrying (a retryable category: the host
	// looks unhealthy), false otherwise (a success, or an answer such as
	// 404 that says nothing about the host's health).
	Attempted(host string, failed bool)
	// AllowRetry reports whether a retry to host may be made now; true
	// spends it.
	AllowRetry(host string) bool
}

// A Budget caps retries in proportion to requests, so that a fleet of
// clients does not multiply the load on a server that is already failing
// (a retry storm). It is in the spirit of Finagle's RetryBudget and gRPC's
// retry throttling.
//
// A retry is allowed while the retries spent in the last Window stay within
//
//	MinPerSecond × Window + Ratio × (requests started in the last Window)
//
// With the defaults, a client may always make 100 retries per 10 seconds,
// and beyond that one retry for every five requests: during an outage the
// load on the server is at most about 1.2 times what the clients ask for,
// instead of 3 times with 3 attempts and no budget. The window slides in
// ten steps of Window/10, on the monotonic clock: a step of the system's
// wall clock neither freezes nor skips it.
//
// Budget implements RetryBudget. It counts every host together: its window
// is one per Budget, whatever host the calls go to.
//
// Zero fields mean the defaults: Ratio 0.2, MinPerSecond 10, Window 10s.
// Set the fields before first use and do not change them after. One
// *Budget may be shared by several transports (and calls of Do); it is safe
// for concurrent use, and holds its lock only to count, never across a
// request.
type Budget struct {
	// Ratio is the share of requests that may be retried, on top of the
	// minimum. Default 0.2.
	Ratio float64
	// MinPerSecond is the rate of retries always allowed, so that a client
	// with little traffic can still retry. Default 10.
	MinPerSecond float64
	// Window is how far back requests and retries are counted. Default 10s.
	Window time.Duration

	mu    sync.Mutex
	slots [budgetSlots]budgetSlot
	// origin is the first clock reading; the slots are numbered by the
	// time since then, which Time.Sub measures on the monotonic clock
	// (time.Now's readings carry one).
	origin time.Time
	epoch  int64 // the number of the newest slot since origin

	// Reading the clock costs more than the rest of a successful request,
	// so started reads it only every budgetClockEvery calls and counts the
	// others in pending, which joins the current slot at the next reading.
	calls   atomic.Uint64
	pending atomic.Int64
}

const (
	budgetSlots      = 10
	budgetClockEvery = 32
)

type budgetSlot struct{ requests, retries float64 }

func (b *Budget) params() (ratio, minPerSecond float64, window time.Duration) {
	ratio, minPerSecond, window = b.Ratio, b.MinPerSecond, b.Window
	if ratio == 0 {
		ratio = DefaultBudgetRatio
	}
	if minPerSecond == 0 {
		minPerSecond = DefaultBudgetMinPerSecond
	}
	if window == 0 {
		window = DefaultBudgetWindow
	}
	return ratio, minPerSecond, window
}

// validate reports what is wrong with b's fields, if anything.
func (b *Budget) validate() error {
	switch {
	case b.Ratio < 0 || math.IsNaN(b.Ratio) || math.IsInf(b.Ratio, 0):
		return errors.New("field Ratio must be a finite number ≥ 0")
	case b.MinPerSecond < 0 || math.IsNaN(b.MinPerSecond) || math.IsInf(b.MinPerSecond, 0):
		return errors.New("field MinPerSecond must be a finite number ≥ 0")
	case b.Window < 0:
		return errors.New("field Window must not be negative")
	}
	return nil
}

// advance moves the window to now, clearing the slots that fell out of it,
// and returns now's slot. b.mu must be held.
func (b *Budget) advance(now time.Time, window time.Duration) *budgetSlot {
	if b.origin.IsZero() {
		b.origin = now
	}
	width := max(int64(window)/budgetSlots, 1)
	e := int64(now.Sub(b.origin)) / width
	if gap := e - b.epoch; gap > 0 {
		for i := int64(1); i <= min(gap, budgetSlots); i++ {
			b.slots[(b.epoch+i)%budgetSlots] = budgetSlot{}
		}
		b.epoch = e
	}
	return &b.slots[((e%budgetSlots)+budgetSlots)%budgetSlots]
}

// Started counts a call that starts now; see RetryBudget. A nil *Budget
// does nothing.
func (b *Budget) Started(string) { b.started(time.Now) }

// Attempted is part of RetryBudget; a Budget counts calls and retries, not
// attempts, so it does nothing.
func (b *Budget) Attempted(string, bool) {}

// AllowRetry reports whether a retry now fits in the budget, and if so
// spends it; see RetryBudget. A nil *Budget allows every retry.
func (b *Budget) AllowRetry(string) bool { return b.allowRetry(time.Now()) }

// started counts a request that starts now. It calls now only every
// budgetClockEvery requests, and takes no lock in between; the requests
// counted without a clock join the current slot at the next reading, so a
// request's time is known to within 32 requests. A nil Budget does nothing.
func (b *Budget) started(now func() time.Time) {
	if b == nil {
		return
	}
	if b.calls.Add(1)%budgetClockEvery != 1 {
		b.pending.Add(1)
		return
	}
	_, _, window := b.params()
	t := now()
	b.mu.Lock()
	b.advance(t, window).requests += 1 + float64(b.pending.Swap(0))
	b.mu.Unlock()
}

// allowRetry reports whether a retry at now fits in the budget, and if so
// spends it. A nil Budget allows every retry.
func (b *Budget) allowRetry(now time.Time) bool {
	if b == nil {
		return true
	}
	ratio, minPerSecond, window := b.params()
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.advance(now, window)
	cur.requests += float64(b.pending.Swap(0))
	var requests, retries float64
	for _, s := range b.slots {
		requests += s.requests
		retries += s.retries
	}
	if retries+1 > minPerSecond*window.Seconds()+ratio*requests {
		return false
	}
	cur.retries++
	return true
}
