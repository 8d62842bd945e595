package retry

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

func TestBudgetArithmetic(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := &Budget{Ratio: 0.5, MinPerSecond: 1, Window: 10 * time.Second}
	// Minimum: 1/s × 10s = 10 retries with no requests at all.
	for i := range 10 {
		assert.True(t, b.allowRetry(t0), "retry %d within the minimum", i+1)
	}
	assert.False(t, b.allowRetry(t0), "the 11th is over the minimum")
	// Every two requests buy one more retry.
	clock := func() time.Time { return t0 }
	b.started(clock)
	assert.False(t, b.allowRetry(t0))
	b.started(clock)
	assert.True(t, b.allowRetry(t0))
	assert.False(t, b.allowRetry(t0))
	// Once the window has passed, the old retries no longer count.
	assert.True(t, b.allowRetry(t0.Add(11*time.Second)))
	// Half a window later, half of the slots are still in it.
	b2 := &Budget{MinPerSecond: 1, Window: 10 * time.Second, Ratio: 0.001}
	for range 10 {
		require.True(t, b2.allowRetry(t0))
	}
	assert.False(t, b2.allowRetry(t0.Add(5*time.Second)), "retries of 5s ago still count")
	assert.True(t, b2.allowRetry(t0.Add(10*time.Second)), "those of 10s ago do not")
}

// stepWall returns tm with its wall clock moved by d (whole seconds) and
// its monotonic reading unchanged: what time.Now returns after the system
// clock was stepped. Nothing in package time builds such a value, so this
// edits the wall field of time.Time (its layout: bit 63 says there is a
// monotonic reading, bits 30-62 are the wall seconds), and checks that the
// result behaves as intended.
func stepWall(t *testing.T, tm time.Time, d time.Duration) time.Time {
	t.Helper()
	require.Zero(t, d%time.Second)
	out := tm
	f := reflect.ValueOf(&out).Elem().FieldByName("wall")
	require.Equal(t, reflect.Uint64, f.Kind(), "time.Time has no wall field: update stepWall")
	wall := (*uint64)(unsafe.Pointer(f.UnsafeAddr()))
	require.NotZero(t, *wall&(1<<63), "tm has no monotonic reading")
	*wall += uint64(int64(d/time.Second)) << 30
	require.Equal(t, time.Duration(0), out.Sub(tm), "the monotonic reading is unchanged")
	require.Equal(t, d, out.Round(0).Sub(tm.Round(0)), "the wall clock moved by d")
	return out
}

func TestBudgetWindowIgnoresWallClockStep(t *testing.T) {
	// The system clock is stepped back an hour one second in; the
	// monotonic clock runs on.
	t0 := time.Now()
	at := func(d time.Duration) time.Time {
		if d < time.Second {
			return t0.Add(d)
		}
		return stepWall(t, t0.Add(d), -time.Hour)
	}
	t.Run("retries", func(t *testing.T) {
		b := &Budget{MinPerSecond: 1, Window: 10 * time.Second, Ratio: 0.001} // 10 retries per window
		for i := range 10 {
			require.True(t, b.allowRetry(at(0)), "retry %d", i+1)
		}
		assert.False(t, b.allowRetry(at(2*time.Second)), "the 10 retries of 2s ago still count")
		assert.True(t, b.allowRetry(at(10*time.Second)), "10s later they have left the window")
		for i := range 9 {
			require.True(t, b.allowRetry(at(12*time.Second)), "retry %d", i+1)
		}
		assert.False(t, b.allowRetry(at(15*time.Second)))
		assert.True(t, b.allowRetry(at(22*time.Second)), "the window keeps sliding")
	})
	t.Run("requests", func(t *testing.T) {

		// Requests slide out of the window on the same clock. 33 requests read
		// the clock twice (requests 1 and 33) and leave none pending.
		r := &Budget{MinPerSecond: 0.0001, Window: 10 * time.Second, Ratio: 1}
		now := t0
		clock := func() time.Time { return now }
		for range budgetClockEvery + 1 {
			r.started(clock)
		}
		now = at(11 * time.Second)
		assert.False(t, r.allowRetry(now), "the requests of 11s ago no longer buy retries")
		for range budgetClockEvery {
			r.started(clock)
		}
		assert.True(t, r.allowRetry(now), "those of now do")
	})
}

func TestBudgetDefaults(t *testing.T) {
	ratio, minPerSecond, window := (&Budget{}).params()
	assert.Equal(t, 0.2, ratio)
	assert.Equal(t, 10.0, minPerSecond)
	assert.Equal(t, 10*time.Second, window)
	var nilBudget *Budget
	assert.True(t, nilBudget.allowRetry(time.Now()), "a nil budget allows everything")
	nilBudget.started(time.Now)
}

func TestBudgetInvalid(t *testing.T) {
	for _, b := range []*Budget{{Ratio: -1}, {MinPerSecond: nanFloat()}, {Window: -time.Second}, {Ratio: infFloat()}} {
		_, err := Do(t.Context(), namedFailure, WithBudget(b))
		require.ErrorIs(t, err, ErrInvalidOption)
		assert.Contains(t, err.Error(), "WithBudget")
	}
}

func TestBudgetCountsWithoutAllocating(t *testing.T) {
	b := &Budget{}
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		b.started(time.Now)
		b.allowRetry(now)
	})
	assert.Zero(t, allocs)
}

func TestBudgetReadsTheClockSparingly(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	reads := 0
	clock := func() time.Time { reads++; return t0 }
	b := &Budget{Ratio: 0.1, MinPerSecond: 0.0001, Window: 10 * time.Second}
	for range 100 {
		b.started(clock)
	}
	assert.Equal(t, 4, reads, "the clock is read on requests 1, 33, 65 and 97")
	// All 100 requests count: 0.1 × 100 = 10 retries.
	for i := range 10 {
		assert.True(t, b.allowRetry(t0), "retry %d", i+1)
	}
	assert.False(t, b.allowRetry(t0))
	// Requests counted without the clock still leave the window.
	assert.False(t, b.allowRetry(t0.Add(11*time.Second)), "no requests in the new window, and the minimum is ~0")
}

// outage sends n requests at the given concurrency through tr to a server
// that always answers 503 and returns the server's hits.
func outage(t *testing.T, n, concurrency int, opts ...Option) int {
	t.Helper()
	srv := h.NewServer(t, h.Status(503))
	tr := NewTransport(srv.Transport(), append([]Option{WithSleepTime(time.Millisecond), WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	defer tr.CloseIdleConnections()
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for range jobs {
				resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
				if assert.NoError(t, err) {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return srv.Hits()
}

func TestBudgetStopsRetryStorm(t *testing.T) {
	hits := outage(t, 2000, 16)
	assert.LessOrEqual(t, hits, 2000*12/10+100, "the default budget: at most ~1.2 hits per request (without: 6000)")
	assert.GreaterOrEqual(t, hits, 2000, "every request is tried once")
}

func TestBudgetLoneRequestGetsAllAttempts(t *testing.T) {
	assert.Equal(t, 3, outage(t, 1, 1))
}

func TestBudgetOff(t *testing.T) {
	assert.Equal(t, 900, outage(t, 300, 8, WithBudget(nil)))
}

func TestBudgetDenial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := WithLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
		shared := &Budget{MinPerSecond: 0.1, Window: 10 * time.Second} // one retry per window
		base := &fakeBase{script: []reply{respond(503)}}
		tr1 := NewTransport(base, WithSleepTime(time.Millisecond), WithBudget(shared), logger)
		tr2 := NewTransport(base, WithSleepTime(time.Millisecond), WithBudget(shared), logger)
		resp, err := tr1.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode, "a denied retry returns the current response")
		assert.Equal(t, 2, base.Calls(), "one retry, then the budget is spent")

		errBase := &fakeBase{script: []reply{fail(syscall.ECONNREFUSED)}}
		tr3 := NewTransport(errBase, WithSleepTime(time.Millisecond), WithBudget(shared), logger)
		_, err = tr3.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.ErrorIs(t, err, ErrBudgetExhausted, "a shared budget is spent across transports")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.Equal(t, 1, errBase.Calls())
		_, _ = tr2.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Equal(t, 3, base.Calls())

		assert.Equal(t, 3, strings.Count(buf.String(), `"msg":"The retry budget is exhausted, so we stop retrying GET http://svc/ at the`), buf.String())
	})
}

var _ http.RoundTripper = (*Transport)(nil)
