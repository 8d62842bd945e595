package retry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timedBase answers call i (0-based, in the order the calls arrive) after
// plan(i)'s delay with its status, unless the request's context ends first.
// It records when each call started, which were cancelled, and closes
// nothing itself: it tracks the bodies it hands out.
type timedBase struct {
	plan func(i int) (time.Duration, int)

	mu        sync.Mutex
	starts    []time.Time
	cancelled []bool
	bodies    []*trackedBody
	headers   []http.Header
}

func (b *timedBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	b.mu.Lock()
	i := len(b.starts)
	b.starts = append(b.starts, time.Now())
	b.cancelled = append(b.cancelled, false)
	b.headers = append(b.headers, r.Header.Clone())
	b.mu.Unlock()
	d, code := b.plan(i)
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		b.mu.Lock()
		b.cancelled[i] = true
		b.mu.Unlock()
		return nil, r.Context().Err()
	}
	body := newTrackedBody(64)
	b.mu.Lock()
	b.bodies = append(b.bodies, body)
	b.mu.Unlock()
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{}, Body: body, Request: r}, nil
}

func (b *timedBase) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.starts)
}

// allClosed reports whether every body the base handed out was closed.
func (b *timedBase) allClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, body := range b.bodies {
		if body.closes.Load() == 0 {
			return false
		}
	}
	return true
}

// slowFirst: call 0 takes slow, the others fast; all answer code.
func slowFirst(slow, fast time.Duration, code int) func(int) (time.Duration, int) {
	return func(i int) (time.Duration, int) {
		if i == 0 {
			return slow, code
		}
		return fast, code
	}
}

func TestHedgeAfterDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &timedBase{plan: slowFirst(time.Second, 5*time.Millisecond, 200)}
		var events []Event
		tr := NewTransport(base, discard, WithMetrics(m), WithName("h"), WithHedge(&Hedge{Delay: 20 * time.Millisecond}),
			WithOnAttempt(func(e Event) { events = append(events, e) }))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, 25*time.Millisecond, time.Since(start), "the hedge, sent at 20ms, answered 5ms later")
		assert.Equal(t, 2, base.calls())
		assert.Equal(t, 20*time.Millisecond, base.starts[1].Sub(base.starts[0]))
		assert.True(t, base.cancelled[0], "the slow attempt was cancelled through its context")
		require.NoError(t, resp.Body.Close())
		assert.True(t, base.allClosed())

		require.Len(t, events, 2, "both attempts reported")
		byN := map[int]Event{}
		for _, e := range events {
			byN[e.Attempt] = e
		}
		assert.False(t, byN[1].Hedge)
		assert.Equal(t, Canceled, byN[1].Category, "the loser was cancelled")
		assert.True(t, byN[2].Hedge)
		assert.Equal(t, Success, byN[2].Category)
		assert.Equal(t, 1.0, testutil.ToFloat64(m.hedges.WithLabelValues("h", "GET", "won")))
		assert.Equal(t, 0.0, testutil.ToFloat64(m.hedges.WithLabelValues("h", "GET", "lost")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.attempts.WithLabelValues("h", "GET", "success")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.attempts.WithLabelValues("h", "GET", "canceled")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("h", "GET", "ok")))
	})
}

func TestHedgeNotSentWhenFastEnough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: slowFirst(10*time.Millisecond, 0, 200)}
		tr := NewTransport(base, discard, WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 1, base.calls())
	})
}

// The first attempt wins when it answers while the hedge is in flight; the
// hedge is cancelled and counts as lost.
func TestHedgeLoses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &timedBase{plan: slowFirst(30*time.Millisecond, time.Second, 200)}
		tr := NewTransport(base, discard, WithMetrics(m), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, 30*time.Millisecond, time.Since(start))
		assert.True(t, base.cancelled[1])
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 1.0, testutil.ToFloat64(m.hedges.WithLabelValues("default", "GET", "lost")))
	})
}

// A 503 from one attempt does not win over a 200 still on its way.
func TestHedgeRetryableFailureWaitsForTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: func(i int) (time.Duration, int) {
			if i == 0 {
				return 100 * time.Millisecond, 200 // slow but good
			}
			return time.Millisecond, 503 // the hedge fails fast
		}}
		tr := NewTransport(base, discard, WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, "the 200 won")
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		assert.Equal(t, 2, base.calls(), "no retry: the first attempt was still in flight")
		require.NoError(t, resp.Body.Close())
		assert.True(t, base.allClosed(), "the 503 was closed")
	})
}

// When every attempt of a round fails retryably, the loop retries after its
// backoff, and hedges count towards MaxAttempts.
func TestHedgeThenRetryWithinMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: func(i int) (time.Duration, int) {
			switch i {
			case 0:
				return 50 * time.Millisecond, 503
			case 1:
				return 40 * time.Millisecond, 503 // the hedge, sent at 20ms
			}
			return time.Millisecond, 200
		}}
		var retries []Event
		tr := NewTransport(base, discard, WithMaxAttempts(3), WithSleepTime(time.Second), WithJitter(NoJitter),
			WithHedge(&Hedge{Delay: 20 * time.Millisecond}),
			WithOnRetry(func(e Event) { retries = append(retries, e) }))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 3, base.calls(), "attempt 1, its hedge, then one retry: MaxAttempts")
		assert.Equal(t, 60*time.Millisecond+time.Second+time.Millisecond, time.Since(start), "both failed by 60ms, then the backoff")
		require.Len(t, retries, 1)
		assert.Equal(t, 2, retries[0].Attempt, "the retry comes after two attempts")
		assert.True(t, base.allClosed(), "both 503s closed")

		// With MaxAttempts 2 the round used them all: no retry.
		base = &timedBase{plan: func(i int) (time.Duration, int) { return time.Duration(50-10*i) * time.Millisecond, 503 }}
		tr = NewTransport(base, discard, WithMaxAttempts(2), WithSleepTime(time.Second), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 2, base.calls())
		assert.True(t, base.allClosed())
	})
}

// MaxAttempts bounds the hedges: with 2 attempts and MaxHedges 3, one hedge.
func TestHedgeMaxAttemptsBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: func(int) (time.Duration, int) { return time.Second, 200 }}
		tr := NewTransport(base, discard, WithMaxAttempts(2), WithHedge(&Hedge{Delay: 10 * time.Millisecond, MaxHedges: 3}))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 2, base.calls())
	})
}

// MaxHedges: several hedges in flight at once, one per delay.
func TestHedgeMaxHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: func(i int) (time.Duration, int) {
			if i == 3 {
				return time.Millisecond, 200
			}
			return time.Second, 200
		}}
		tr := NewTransport(base, discard, WithMaxAttempts(5), WithHedge(&Hedge{Delay: 10 * time.Millisecond, MaxHedges: 3}))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 31*time.Millisecond, time.Since(start), "hedges at 10, 20, 30ms; the third answered")
		assert.Equal(t, 4, base.calls())
		for i := 0; i < 3; i++ {
			assert.True(t, base.cancelled[i], "attempt %d cancelled", i+1)
		}
	})
}

// A budget that denies: the hedge is not sent, the attempt in flight goes
// on and answers.
func TestHedgeBudgetDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: slowFirst(100*time.Millisecond, time.Millisecond, 200)}
		tr := NewTransport(base, discard, WithBudget(denyingBudget{}), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 1, base.calls())
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		assert.False(t, base.cancelled[0], "the attempt in flight was not cancelled")
	})
}

// denyingBudget allows no retry, and so no hedge.
type denyingBudget struct{}

func (denyingBudget) Started(string)         {}
func (denyingBudget) Attempted(string, bool) {}
func (denyingBudget) AllowRetry(string) bool { return false }

// Requests that may not be retried on a timeout are never hedged.
func TestHedgeOnlyWhatMayBeRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    func(t *testing.T) *http.Request
		opts   []Option
		hedged bool
	}{
		{"GET", func(t *testing.T) *http.Request { return newReq(t, "GET", "http://svc/", nil) }, nil, true},
		{"POST", func(t *testing.T) *http.Request { return newReq(t, "POST", "http://svc/", strings.NewReader("x")) }, nil, false},
		{"POST with Idempotency-Key", func(t *testing.T) *http.Request {
			r := newReq(t, "POST", "http://svc/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k1")
			return r
		}, nil, true},
		{"POST with WithRetryNonIdempotent", func(t *testing.T) *http.Request { return newReq(t, "POST", "http://svc/", strings.NewReader("x")) },
			[]Option{WithRetryNonIdempotent(true)}, true},
		{"PUT opaque body within the buffer limit", func(t *testing.T) *http.Request {
			return newReq(t, "PUT", "http://svc/", &opaqueBody{Reader: strings.NewReader("small")})
		}, nil, true},
		{"PUT opaque body over the buffer limit", func(t *testing.T) *http.Request {
			return newReq(t, "PUT", "http://svc/", &opaqueBody{Reader: strings.NewReader(strings.Repeat("x", 100))})
		}, []Option{WithMaxBufferedBody(10)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &timedBase{plan: slowFirst(100*time.Millisecond, time.Millisecond, 200)}
				tr := NewTransport(base, append([]Option{discard, WithHedge(&Hedge{Delay: 20 * time.Millisecond})}, tc.opts...)...)
				resp, err := tr.RoundTrip(tc.req(t))
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				want := 1
				if tc.hedged {
					want = 2
				}
				assert.Equal(t, want, base.calls())
			})
		})
	}
}

// A host that is cooling down is not hedged: a 429 with Retry-After seen
// by another request while the first attempt is in flight stops the hedge.
func TestHedgeNotWhileCooling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		aCalls := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/b" {
				return &http.Response{StatusCode: 429, Status: "429 Too Many Requests",
					Header: http.Header{"Retry-After": {"1"}}, Body: http.NoBody, Request: r}, nil
			}
			mu.Lock()
			aCalls++
			mu.Unlock()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		})
		tr := NewTransport(base, discard, WithMaxAttempts(3), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		var wg sync.WaitGroup
		wg.Go(func() {
			resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/a", nil))
			if assert.NoError(t, err) {
				assert.Equal(t, 200, resp.StatusCode)
				_ = resp.Body.Close()
			}
		})
		time.Sleep(5 * time.Millisecond)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/b", nil))
		_ = resp
		_ = err
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, 1, aCalls, "no hedge while the host cools down")
	})
}

// The Quantile applies once a host has HedgeMinSamples latencies; before,
// Delay (here 0: no hedging); never below MinDelay.
func TestHedgeQuantile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		slow := false
		base := &timedBase{plan: func(i int) (time.Duration, int) {
			mu.Lock()
			defer mu.Unlock()
			if slow {
				slow = false
				return time.Second, 200
			}
			return time.Duration(1+i%10) * time.Millisecond, 200 // 1..10ms
		}}
		tr := NewTransport(base, discard, WithHedge(&Hedge{Quantile: 0.5, MinDelay: 3 * time.Millisecond}))
		get := func() time.Duration {
			start := time.Now()
			resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			return time.Since(start)
		}
		for range HedgeMinSamples - 1 {
			get()
		}
		mu.Lock()
		slow = true
		mu.Unlock()
		assert.Equal(t, time.Second, get(), "99 samples: no quantile yet, and Delay 0 sends no hedge")
		for range 200 {
			get()
		}
		calls := base.calls()
		mu.Lock()
		slow = true
		mu.Unlock()
		took := get()
		assert.Equal(t, calls+2, base.calls(), "hedged")
		// The median of 1..10ms is 5 or 6ms; its bucket's bound is below
		// 6.5ms; the hedge then takes 1..10ms more.
		assert.Less(t, took, 20*time.Millisecond)
		assert.Greater(t, took, 5*time.Millisecond)

		// MinDelay wins over a lower quantile.
		tr2 := NewTransport(base, discard, WithHedge(&Hedge{Quantile: 0.5, MinDelay: 50 * time.Millisecond}))
		tr2.once.Do(tr2.setDefaults)
		for range HedgeMinSamples {
			tr2.latencies[0].get("svc").add(time.Millisecond)
		}
		mu.Lock()
		slow = true
		mu.Unlock()
		start := time.Now()
		resp, err := tr2.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "not before MinDelay")
		assert.Less(t, time.Since(start), time.Second)
	})
}

// Per request, with WithRequestOptions.
func TestHedgePerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &timedBase{plan: slowFirst(100*time.Millisecond, time.Millisecond, 200)}
		tr := NewTransport(base, discard)
		ctx := WithRequestOptions(context.Background(), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		req, err := http.NewRequestWithContext(ctx, "GET", "http://svc/x", nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 21*time.Millisecond, time.Since(start))
	})
}

func TestHedgeInvalid(t *testing.T) {
	for _, h := range []Hedge{
		{Delay: -1},
		{Delay: time.Millisecond, MinDelay: -1},
		{Quantile: 1},
		{Quantile: -0.1},
		{Quantile: 0.5, MaxHedges: -1},
		{},
	} {
		err := CheckOptions(WithHedge(&h))
		assert.ErrorIs(t, err, ErrInvalidOption, "%+v", h)
		assert.Contains(t, err.Error(), "WithHedge")
	}
	assert.NoError(t, CheckOptions(WithHedge(nil)))
	assert.NoError(t, CheckOptions(WithHedge(&Hedge{Quantile: 0.95})))
}

// WithLogTries writes a footprint for each hedge sent.
func TestHedgeFootprint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var mu sync.Mutex
		logger := slog.New(slog.NewJSONHandler(lockedWriter{&buf, &mu}, nil))
		base := &timedBase{plan: slowFirst(100*time.Millisecond, time.Millisecond, 200)}
		tr := NewTransport(base, WithLogger(logger), WithLogTries(true), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x?token=secret", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		assert.Contains(t, out, `"log_type":"info"`)
		assert.Contains(t, out, `"hedge":true`)
		assert.Contains(t, out, "so we hedge it with the 2 attempt")
		assert.NotContains(t, out, "secret")
	})
}

// BenchmarkHedgeSuccessPath measures a successful GET through a Transport
// with hedging configured, when no hedge fires, against one without.
func BenchmarkHedgeSuccessPath(b *testing.B) {
	// A fresh response each time (one allocation, in every case): a round
	// wraps the winner's body.
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Status: "200 OK", Body: http.NoBody, Request: r}, nil
	})
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://svc/x", nil)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"hedge=off", nil},
		{"hedge=10ms", []Option{WithHedge(&Hedge{Delay: 10 * time.Millisecond})}},
		{"hedge=p95", []Option{WithHedge(&Hedge{Quantile: 0.95, Delay: 10 * time.Millisecond})}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tr := NewTransport(base, append([]Option{discard}, tc.opts...)...)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
			}
		})
	}
}
