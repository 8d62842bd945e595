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
	DefaultBudgetRatio        = 0.1
	DefaultBudgetMinPerSecond = 0.3
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
// retry throttling, and counts each destination host apart: an outage of
// one API does not spend the retries of another.
//
// A retry to a host is allowed while the retries to it spent in the last
// Window stay within
//
//	MinPerSecond × Window + Ratio × (requests to it started in the last Window)
//
// With the defaults, a client may always make 3 retries to a host per 10
// seconds, and beyond that one retry for every ten requests to it. So a
// lone failing request, when nothing else to its host failed recently,
// still gets all of its attempts (the default 3, and up to 4), while a
// client that keeps sending to a dead host adds at most 10% to its load,
// plus its 3 retries per 10s. For a fleet, that minimum per client is
// what counts: in bench/fleetsim (a 2s outage, 1000 requests per second in
// all, 4 attempts), 50 clients put 1.2 times the wanted load on the dead
// server and 500 clients 1.8 times, against 3.4 times without a budget. The window slides in ten steps of Window/10, on
// the monotonic clock: a step of the system's wall clock neither freezes
// nor skips it.
//
// Budget implements RetryBudget. The host is what the loop passes: the
// request's URL.Host for a Transport, "" for Do. It keeps at most MaxHosts
// hosts, forgetting the idlest when one more comes.
//
// Zero fields mean the defaults: Ratio 0.1, MinPerSecond 0.3, Window 10s.
// Set the fields before first use and do not change them after. One
// *Budget may be shared by several transports (and calls of Do); it is safe
// for concurrent use: requests to different hosts share no lock, and a
// request holds its host's lock only to count, never across the request.
type Budget struct {
	// Ratio is the share of requests to a host that may be retried, on
	// top of the minimum. Default 0.1.
	Ratio float64
	// MinPerSecond is the rate of retries to a host always allowed, so
	// that a client with little traffic can still retry. Default 0.3, so
	// 3 retries per default Window.
	MinPerSecond float64
	// Window is how far back requests and retries are counted. Default 10s.
	Window time.Duration

	hosts hostTable[hostBudget]
}

// hostBudget is a Budget's window for one host.
type hostBudget struct {
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
// and returns now's slot. h.mu must be held.
func (h *hostBudget) advance(now time.Time, window time.Duration) *budgetSlot {
	if h.origin.IsZero() {
		h.origin = now
	}
	width := max(int64(window)/budgetSlots, 1)
	e := int64(now.Sub(h.origin)) / width
	if gap := e - h.epoch; gap > 0 {
		for i := int64(1); i <= min(gap, budgetSlots); i++ {
			h.slots[(h.epoch+i)%budgetSlots] = budgetSlot{}
		}
		h.epoch = e
	}
	return &h.slots[((e%budgetSlots)+budgetSlots)%budgetSlots]
}

// Started counts a call to host that starts now; see RetryBudget. A nil
// *Budget does nothing.
func (b *Budget) Started(host string) { b.started(host, time.Now) }

// Attempted is part of RetryBudget; a Budget counts calls and retries, not
// attempts, so it does nothing.
func (b *Budget) Attempted(string, bool) {}

// AllowRetry reports whether a retry to host now fits in the budget, and
// if so spends it; see RetryBudget. A nil *Budget allows every retry.
func (b *Budget) AllowRetry(host string) bool { return b.allowRetry(host, time.Now()) }

// started counts a request to host that starts now. It calls now only
// every budgetClockEvery requests to host, and takes no lock in between;
// the requests counted without a clock join the current slot at the next
// reading, so a request's time is known to within 32 requests. A nil
// Budget does nothing.
func (b *Budget) started(host string, now func() time.Time) {
	if b == nil {
		return
	}
	h := b.hosts.get(host)
	if h.calls.Add(1)%budgetClockEvery != 1 {
		h.pending.Add(1)
		return
	}
	_, _, window := b.params()
	t := now()
	h.mu.Lock()
	h.advance(t, window).requests += 1 + float64(h.pending.Swap(0))
	h.mu.Unlock()
}

// allowRetry reports whether a retry to host at now fits in the budget,
// and if so spends it. A nil Budget allows every retry.
func (b *Budget) allowRetry(host string, now time.Time) bool {
	if b == nil {
		return true
	}
	ratio, minPerSecond, window := b.params()
	h := b.hosts.get(host)
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.advance(now, window)
	cur.requests += float64(h.pending.Swap(0))
	var requests, retries float64
	for _, s := range h.slots {
		requests += s.requests
		retries += s.retries
	}
	if retries+1 > minPerSecond*window.Seconds()+ratio*requests {
		return false
	}
	cur.retries++
	return true
}
