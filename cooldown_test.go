package retry

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// throttlingServer answers 429 with Retry-After: 1 until busyUntil, then
// 200; each answer takes latency. It records when each hit arrived and how
// many were in flight when the first 429 went out.
type throttlingServer struct {
	start     time.Time
	busyUntil time.Duration
	latency   time.Duration

	mu              sync.Mutex
	inFlight        int
	hits            []time.Duration // since start
	first429        time.Duration   // -1: none yet
	inFlightAtFirst int
}

func newThrottlingServer(busy, latency time.Duration) *throttlingServer {
	return &throttlingServer{start: time.Now(), busyUntil: busy, latency: latency, first429: -1}
}

func (s *throttlingServer) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.inFlight++
	s.hits = append(s.hits, time.Since(s.start))
	s.mu.Unlock()
	time.Sleep(s.latency)
	s.mu.Lock()
	defer s.mu.Unlock()
	el := time.Since(s.start)
	code, h := 200, http.Header{}
	if el < s.busyUntil {
		code = http.StatusTooManyRequests
		h.Set("Retry-After", "1")
		if s.first429 < 0 {
			s.first429, s.inFlightAtFirst = el, s.inFlight
		}
	}
	s.inFlight--
	return &http.Response{StatusCode: code, Status: strconv.Itoa(code) + " " + http.StatusText(code), Header: h, Body: http.NoBody, Request: r}, nil
}

// hitsBetween counts the hits that arrived in [from, to).
func (s *throttlingServer) hitsBetween(from, to time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.hits {
		if h >= from && h < to {
			n++
		}
	}
	return n
}

// stormResult is what 64 goroutines sending requests back to back saw.
type stormResult struct {
	hitsWhileBusy int // after the first 429, before the server recovered
	inFlight      int // when the first 429 went out
	requests      int
	failed        int
	slowest       time.Duration
}

func storm(t *testing.T, opts ...Option) stormResult {
	const (
		goroutines = 64
		busy       = time.Second
		latency    = 10 * time.Millisecond
		runFor     = 1500 * time.Millisecond
	)
	var res stormResult
	synctest.Test(t, func(t *testing.T) {
		srv := newThrottlingServer(busy, latency)
		tr := NewTransport(srv, append([]Option{WithBudget(nil), WithSleepTime(100 * time.Millisecond), discard}, opts...)...)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				time.Sleep(time.Duration(g) * 5 * time.Millisecond) // staggered starts
				for time.Since(srv.start) < runFor {
					start := time.Now()
					resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
					took := time.Since(start)
					mu.Lock()
					res.requests++
					res.slowest = max(res.slowest, took)
					if err != nil || resp.StatusCode != 200 {
						res.failed++
					}
					mu.Unlock()
					if resp != nil {
						_ = resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		res.hitsWhileBusy = srv.hitsBetween(srv.first429, busy)
		res.inFlight = srv.inFlightAtFirst
	})
	return res
}

// A 429 with Retry-After holds every request to that host off until the
// cooldown ends, first attempts of new requests included.
func TestHostCooldownHoldsOffEveryRequest(t *testing.T) {
	with := storm(t)
	without := storm(t, WithHostCooldown(false))
	t.Logf("hits after the first 429 while the server was busy: %d with the cooldown (in flight then: %d), %d without; slowest request %v with the cooldown",
		with.hitsWhileBusy, with.inFlight, without.hitsWhileBusy, with.slowest)

	// In flight when the first 429 went out: those may still arrive (the
	// first 429 included, which arrived before it went out, is counted by
	// hitsBetween only if it arrived after; so this bound is generous by
	// at most the in-flight count), plus one per cooldown end.
	assert.LessOrEqual(t, with.hitsWhileBusy, with.inFlight+1, "only requests already in flight reach a cooling host")
	assert.Zero(t, with.failed, "every request succeeds")
	assert.LessOrEqual(t, with.slowest, time.Second+100*time.Millisecond+probeWindow+3*10*time.Millisecond,
		"within 1s + jitter (+ the probe's window and the server's latency)")

	assert.Greater(t, without.hitsWhileBusy, 10*with.hitsWhileBusy, "without the cooldown, new requests keep hitting the busy host")
}

func TestHostCooldownPastTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(429, "Retry-After", "10"), respond(200)}}
		tr := NewTransport(base, append(fast, WithMaxAttempts(1))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/a", nil))
		require.NoError(t, err)
		require.Equal(t, 429, resp.StatusCode)

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://api.example/b", nil).WithContext(ctx))
		assert.Nil(t, resp)
		assert.ErrorIs(t, err, ErrHostCoolingDown)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Zero(t, time.Since(start), "returned at once")
		assert.Equal(t, 1, base.Calls(), "not sent")

		// A request without a deadline waits for the cooldown's end (plus
		// at most a second of jitter) and goes.
		start = time.Now()
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://api.example/c", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		waited := time.Since(start)
		assert.GreaterOrEqual(t, waited, 10*time.Second)
		assert.LessOrEqual(t, waited, 11*time.Second)
	})
}

func TestHostCooldownCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503, "Retry-After", "10"), respond(200)}}
		tr := NewTransport(base, append(fast, WithMaxAttempts(1))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
		require.NoError(t, err)
		_ = resp.Body.Close()

		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(2*time.Second, func() { cancel(errShutdown) })
		start := time.Now()
		_, err = tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil).WithContext(ctx))
		assert.ErrorIs(t, err, errShutdown)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 2*time.Second, time.Since(start), "returned as soon as the caller canceled")
		assert.Equal(t, 1, base.Calls())
	})
}

func TestHostCooldownRules(t *testing.T) {
	cases := []struct {
		name string
		// first is the answer that may start a cooldown; then a second
		// request goes to host.
		first reply
		host  string
		opts  []Option
		// wait is how long the second request waits before it is sent
		// (at least; jitter may add up to a tenth).
		wait time.Duration
	}{
		{"429 with Retry-After", respond(429, "Retry-After", "4"), "api.example", nil, 4 * time.Second},
		{"503 with Retry-After", respond(503, "Retry-After", "4"), "api.example", nil, 4 * time.Second},
		{"another host is not held off", respond(429, "Retry-After", "4"), "other.example", nil, 0},
		{"another port is another host", respond(429, "Retry-After", "4"), "api.example:8443", nil, 0},
		{"no Retry-After", respond(429), "api.example", nil, 0},
		{"500 with Retry-After", respond(500, "Retry-After", "4"), "api.example", nil, 0},
		{"Retry-After above the max delay", respond(429, "Retry-After", "3600"), "api.example", nil, 0},
		{"turned off", respond(429, "Retry-After", "4"), "api.example", []Option{WithHostCooldown(false)}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{c.first, respond(200)}}
				tr := NewTransport(base, append(append(fast, WithMaxAttempts(1)), c.opts...)...)
				resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
				require.NoError(t, err)
				_ = resp.Body.Close()
				start := time.Now()
				resp, err = tr.RoundTrip(newReq(t, "GET", "http://"+c.host+"/", nil))
				require.NoError(t, err)
				_ = resp.Body.Close()
				waited := time.Since(start)
				assert.GreaterOrEqual(t, waited, c.wait)
				assert.LessOrEqual(t, waited, c.wait+c.wait/10)
			})
		})
	}
}

// A request's own Retry-After starts the cooldown; its retry waits exactly
// what it was asked to, no jitter added.
func TestHostCooldownOwnRetryAfterIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(429, "Retry-After", "3"), respond(200)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://api.example/", nil))
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, []time.Duration{3 * time.Second}, base.gaps())
	})
}

// The table of cooling hosts stays bounded however many hosts ask, and a
// cooldown seen to be over is cleared, so that requests skip the look-up
// again.
func TestCooldownTableBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := newCooldowns()
		for i := range 3 * MaxHosts {
			cs.hold(fmt.Sprintf("h%d.example", i), time.Now(), time.Minute)
		}
		assert.Equal(t, MaxHosts, cs.hosts.len(), "bounded: the idlest are forgotten")
		last := fmt.Sprintf("h%d.example", 3*MaxHosts-1)
		assert.Positive(t, cs.left(last, time.Now), "the newest is kept")
		assert.Zero(t, cs.left("h0.example", time.Now), "the oldest was forgotten")

		time.Sleep(time.Minute) // every cooldown ends
		assert.Zero(t, cs.left(last, time.Now))
		cs.hold("new.example", time.Now(), time.Minute)
		assert.Positive(t, cs.left("new.example", time.Now))
	})
}

func TestCooldownProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := newCooldowns()
		cs.hold("a.example", time.Now(), time.Second)
		cs.hold("a.example", time.Now(), 500*time.Millisecond) // earlier: no change
		assert.Equal(t, int32(1), cs.active.Load())
		assert.Equal(t, time.Second, cs.left("a.example", time.Now))
		assert.Equal(t, time.Second, cs.remaining("a.example", time.Now))

		time.Sleep(time.Second)
		assert.Zero(t, cs.remaining("a.example", time.Now), "over")
		assert.Zero(t, cs.left("a.example", time.Now), "the first to find it over is the probe: it goes")
		assert.Equal(t, probeWindow, cs.left("a.example", time.Now), "the others wait for the probe's answer")

		// The probe is answered with another Retry-After: the cooldown
		// goes on and nobody else went.
		cs.hold("a.example", time.Now(), time.Second)
		assert.Equal(t, time.Second, cs.left("a.example", time.Now))

		// An answer to a request sent before a cooldown ends nothing.
		cs.answered("a.example")
		assert.Equal(t, time.Second, cs.left("a.example", time.Now))

		// The next probe is answered: the host is back for everyone.
		time.Sleep(time.Second)
		assert.Zero(t, cs.left("a.example", time.Now))
		cs.answered("a.example")
		assert.Zero(t, cs.left("a.example", time.Now))
		assert.Zero(t, cs.active.Load(), "cleared: requests skip the look-up again")

		// A probe that gets no answer (a reset) lets the next go after
		// its window.
		cs.hold("a.example", time.Now(), time.Second)
		time.Sleep(time.Second)
		assert.Zero(t, cs.left("a.example", time.Now))
		time.Sleep(probeWindow)
		assert.Zero(t, cs.left("a.example", time.Now), "the next probe")
		assert.Equal(t, probeWindow, cs.left("a.example", time.Now))
	})
}

// Through a Transport: after the cooldown, one request probes the host
// while the others wait; a Retry-After on the probe holds them all off
// again.
func TestHostCooldownProbeThroughTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newThrottlingServer(2500*time.Millisecond, 10*time.Millisecond) // busy for 2.5s
		tr := NewTransport(srv, WithBudget(nil), WithSleepTime(100*time.Millisecond), WithMaxAttempts(10), discard)
		var wg sync.WaitGroup
		for i := range 21 {
			wg.Go(func() {
				if i > 0 {
					time.Sleep(50 * time.Millisecond) // after the first 429
				}
				resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
				if assert.NoError(t, err) {
					assert.Equal(t, 200, resp.StatusCode, "retried after each Retry-After until the server was back")
				}
			})
		}
		wg.Wait()
		// While the server is busy: the first request at 0s, then one
		// probe at each cooldown end (~1s, ~2s), each answered with a 429
		// that extends the cooldown; the other 20 requests wait.
		assert.Equal(t, 3, srv.hitsBetween(0, 2500*time.Millisecond), "one request a cooldown end, no more")
	})
}

// The waits for a cooldown count in retry_http_backoff_seconds.
func TestHostCooldownWaitsCountAsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &fakeBase{script: []reply{respond(429, "Retry-After", "4"), respond(200)}}
		tr := NewTransport(base, append(fast, WithMaxAttempts(1), WithMetrics(m), WithName("c"))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
		require.NoError(t, err)
		_ = resp.Body.Close()
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil)) // waits ~4s first
		require.NoError(t, err)
		_ = resp.Body.Close()
		h := m.backoff.WithLabelValues("c").(prometheus.Histogram)
		var pb dto.Metric
		require.NoError(t, h.Write(&pb))
		assert.Equal(t, uint64(1), pb.GetHistogram().GetSampleCount())
		assert.InDelta(t, 4.0, pb.GetHistogram().GetSampleSum(), 0.4)
	})
}
