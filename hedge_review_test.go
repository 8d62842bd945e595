package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Quantile 0.95 on a continuous (log-normal) latency distribution: a hedge
// goes to about 5% of requests once warmed up. (When only winners' times
// were recorded, the slow attempts that got hedged were never seen and the
// delay ratcheted down: 1.09–1.11 hits per request.)
func TestHedgeQuantileLoadOnContinuousLatencies(t *testing.T) {
	for _, sigma := range []float64{0.5, 1, 1.5, 2} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				rng := rand.New(rand.NewPCG(1, 2))
				base := &timedBase{plan: func(int) (time.Duration, int) {
					mu.Lock()
					defer mu.Unlock()
					// log-normal, median 10ms, sigma 0.5
					return time.Duration(10e6 * math.Exp(sigma*rng.NormFloat64())), 200
				}}
				tr := NewTransport(base, discard, WithHedge(&Hedge{Quantile: 0.95}))
				for range 500 { // warm-up
					resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
					require.NoError(t, err)
					resp.Body.Close()
				}
				calls := base.calls()
				const n = 3000
				for range n {
					resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
					require.NoError(t, err)
					resp.Body.Close()
				}
				q, _ := tr.latencies[0].get("svc").quantile(0.95)
				hits := float64(base.calls()-calls) / n
				t.Logf("sigma %.1f: hits/request %.3f, delay now %v (true p95 = %v)", sigma, hits, q, time.Duration(10e6*math.Exp(sigma*1.645)))
				require.LessOrEqual(t, hits, 1.07, "Quantile 0.95 hedges about 5%% of requests")
			})
		})
	}
}

// A hedge whose GetBody fails is not made: the final *Error counts the
// attempts sent.
func TestHedgeUnsentNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &timedBase{plan: func(i int) (time.Duration, int) { return 50 * time.Millisecond, 503 }}
		var kinds []string
		tr := NewTransport(base, discard, WithMetrics(m), WithName("h"), WithHedge(&Hedge{Delay: 10 * time.Millisecond}),
			WithOnAttempt(func(e Event) {
				kinds = append(kinds, fmt.Sprintf("attempt %d hedge=%v %v", e.Attempt, e.Hedge, e.Category))
			}))
		req := newReq(t, "PUT", "http://svc/x", strings.NewReader("abc"))
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("no more body") }
		resp, err := tr.RoundTrip(req)
		require.Nil(t, resp)
		var e *Error
		require.ErrorAs(t, err, &e)
		t.Logf("calls=%d err=%v attempts=%d events=%v hedges=%v", base.calls(), err, e.Attempts, kinds,
			testutil.ToFloat64(m.hedges.WithLabelValues("h", "PUT", "lost")))
		assert.Equal(t, base.calls(), e.Attempts, "*Error.Attempts counts attempts sent")
	})
}

// rvStallBody blocks in Read until closed or its request's context ends, as a
// net/http body of a server that sent headers and stalls does.
type rvStallBody struct {
	ctx    context.Context
	closed chan struct{}
	once   sync.Once
}

func (b *rvStallBody) Read(p []byte) (int, error) {
	select {
	case <-b.closed:
		return 0, errors.New("closed")
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
}
func (b *rvStallBody) Close() error { b.once.Do(func() { close(b.closed) }); return nil }

// A hedge's 503 whose body stalls is held; the main attempt's 200 arrives
// later and wins, and is returned at once: the held 503's context is
// cancelled before it is drained.
func TestHedgeHeldFailureDoesNotDelayWinner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			i := calls.Add(1)
			if i == 1 {
				time.Sleep(50 * time.Millisecond)
				return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			}
			time.Sleep(5 * time.Millisecond)
			return &http.Response{StatusCode: 503, Status: "503", Header: http.Header{}, Body: &rvStallBody{ctx: r.Context(), closed: make(chan struct{})}, Request: r}, nil
		})
		tr := NewTransport(base, discard, WithHedge(&Hedge{Delay: 10 * time.Millisecond}))
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
		assert.Equal(t, 50*time.Millisecond, time.Since(start), "the 200 is returned when it arrives")
	})
}

// A huge MaxHedges is bounded by MaxAttempts: no panic, no huge channel.
func TestHedgeHugeMaxHedges(t *testing.T) {
	for _, mh := range []int{math.MaxInt, 1 << 28} {
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		})
		tr := NewTransport(base, discard, WithHedge(&Hedge{Delay: time.Second, MaxHedges: mh}))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("MaxHedges %d: RoundTrip panicked: %v", mh, p)
				}
			}()
			resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
			require.NoError(t, err)
			resp.Body.Close()
		}()
		runtime.ReadMemStats(&ms)
		t.Logf("MaxHedges %d: one RoundTrip allocated %d MiB", mh, (ms.TotalAlloc-before)>>20)
		assert.Less(t, ms.TotalAlloc-before, uint64(1<<20), "MaxHedges %d", mh)
	}
}

// MaxAttempts 2: attempt 1 fails 503 at 30ms, the hedge (sent at 20ms) fails
// 503 at 40ms; the loop gives up and returns the hedge's 503: a hedge's
// response was returned, so it counts as won.
func TestHedgeReturnedCountsWon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &timedBase{plan: func(i int) (time.Duration, int) { return time.Duration(30-10*i) * time.Millisecond, 503 }}
		tr := NewTransport(base, discard, WithMetrics(m), WithName("h"), WithMaxAttempts(2), WithHedge(&Hedge{Delay: 20 * time.Millisecond}))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
		require.Same(t, base.bodies[1], resp.Body.(*cancelBody).ReadCloser, "the hedge's response is returned")
		resp.Body.Close()
		assert.Equal(t, 1.0, testutil.ToFloat64(m.hedges.WithLabelValues("h", "GET", "won")))
	})
}

// net/http's server (and many callers) recover a panic of the goroutine that
// called RoundTrip. With WithHedge the attempts run in goroutines of the
// package: a panic there is carried to the caller's goroutine.
func TestHedgePanicReachesTheCaller(t *testing.T) {
	for _, hedge := range []bool{false, true} {
		opts := []Option{discard}
		if hedge {
			opts = append(opts, WithHedge(&Hedge{Delay: time.Second}))
		}
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) { panic("base bug") })
		tr := NewTransport(base, opts...)
		func() {
			defer func() { assert.Equal(t, "base bug", recover(), "hedge=%v", hedge) }()
			_, _ = tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		}()
	}
}
