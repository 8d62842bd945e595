package retry

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
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
		assert.True(t, b.allowRetry("", t0), "retry %d within the minimum", i+1)
	}
	assert.False(t, b.allowRetry("", t0), "the 11th is over the minimum")
	// Every two requests buy one more retry.
	clock := func() time.Time { return t0 }
	b.started("", clock)
	assert.False(t, b.allowRetry("", t0))
	b.started("", clock)
	assert.True(t, b.allowRetry("", t0))
	assert.False(t, b.allowRetry("", t0))
	// Once the window has passed, the old retries no longer count.
	assert.True(t, b.allowRetry("", t0.Add(11*time.Second)))
	// Half a window later, half of the slots are still in it.
	b2 := &Budget{MinPerSecond: 1, Window: 10 * time.Second, Ratio: 0.001}
	for range 10 {
		require.True(t, b2.allowRetry("", t0))
	}
	assert.False(t, b2.allowRetry("", t0.Add(5*time.Second)), "retries of 5s ago still count")
	assert.True(t, b2.allowRetry("", t0.Add(10*time.Second)), "those of 10s ago do not")
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
			require.True(t, b.allowRetry("", at(0)), "retry %d", i+1)
		}
		assert.False(t, b.allowRetry("", at(2*time.Second)), "the 10 retries of 2s ago still count")
		assert.True(t, b.allowRetry("", at(10*time.Second)), "10s later they have left the window")
		for i := range 9 {
			require.True(t, b.allowRetry("", at(12*time.Second)), "retry %d", i+1)
		}
		assert.False(t, b.allowRetry("", at(15*time.Second)))
		assert.True(t, b.allowRetry("", at(22*time.Second)), "the window keeps sliding")
	})
	t.Run("requests", func(t *testing.T) {

		// Requests slide out of the window on the same clock. 33 requests read
		// the clock twice (requests 1 and 33) and leave none pending.
		r := &Budget{MinPerSecond: 0.0001, Window: 10 * time.Second, Ratio: 1}
		now := t0
		clock := func() time.Time { return now }
		for range budgetClockEvery + 1 {
			r.started("", clock)
		}
		now = at(11 * time.Second)
		assert.False(t, r.allowRetry("", now), "the requests of 11s ago no longer buy retries")
		for range budgetClockEvery {
			r.started("", clock)
		}
		assert.True(t, r.allowRetry("", now), "those of now do")
	})
}

func TestBudgetDefaults(t *testing.T) {
	ratio, minPerSecond, window := (&Budget{}).params()
	assert.Equal(t, 0.1, ratio)
	assert.Equal(t, 0.3, minPerSecond)
	assert.Equal(t, 10*time.Second, window)
	var nilBudget *Budget
	assert.True(t, nilBudget.allowRetry("", time.Now()), "a nil budget allows everything")
	nilBudget.started("", time.Now)
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
		b.started("", time.Now)
		b.allowRetry("", now)
	})
	assert.Zero(t, allocs)
}

func TestBudgetReadsTheClockSparingly(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	reads := 0
	clock := func() time.Time { reads++; return t0 }
	b := &Budget{Ratio: 0.1, MinPerSecond: 0.0001, Window: 10 * time.Second}
	for range 100 {
		b.started("", clock)
	}
	assert.Equal(t, 4, reads, "the clock is read on requests 1, 33, 65 and 97")
	// All 100 requests count: 0.1 × 100 = 10 retries.
	for i := range 10 {
		assert.True(t, b.allowRetry("", t0), "retry %d", i+1)
	}
	assert.False(t, b.allowRetry("", t0))
	// Requests counted without the clock still leave the window.
	assert.False(t, b.allowRetry("", t0.Add(11*time.Second)), "no requests in the new window, and the minimum is ~0")
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
	t.Logf("%d hits for 2000 requests", hits)
	assert.LessOrEqual(t, hits, 2000*125/100, "the default budget: at most 1.25 hits per request (without: 6000)")
	assert.GreaterOrEqual(t, hits, 2000, "every request is tried once")
}

func TestBudgetLoneRequestGetsAllAttempts(t *testing.T) {
	assert.Equal(t, 3, outage(t, 1, 1))
}

// The fleet case, seen from one client: its few requests to a dead host
// may not each spend all their retries, or a fleet of such clients would
// triple the load (each client's minimum is 3 retries per host per 10s).
func TestBudgetLowTrafficClientSparesADeadHost(t *testing.T) {
	hits := outage(t, 20, 1)
	assert.LessOrEqual(t, hits, 20+3+2, "20 requests: the minimum of 3 retries and 0.1 × 20 (without a budget: 60)")
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

func TestBudgetCountsPerHost(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	clock := func() time.Time { return t0 }
	b := &Budget{Ratio: 0.5, MinPerSecond: 0.1, Window: 10 * time.Second} // per host: 1 retry + 1 per 2 requests
	for range 4 {
		b.started("a", clock)
	}
	for i := range 3 {
		require.True(t, b.allowRetry("a", t0), "retry %d to a", i+1)
	}
	assert.False(t, b.allowRetry("a", t0), "a's retries are spent")
	assert.True(t, b.allowRetry("b", t0), "b's are intact: its minimum")
	assert.False(t, b.allowRetry("b", t0), "and only its own requests buy more")
	b.started("b", clock)
	b.started("b", clock)
	assert.True(t, b.allowRetry("b", t0))
	assert.False(t, b.allowRetry("a", t0), "b's requests bought nothing for a")
	assert.True(t, b.allowRetry("", t0), `Do's host "" has its own window`)
}

func TestBudgetMemoryIsBounded(t *testing.T) {
	b := &Budget{}
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 * MaxHosts {
		host := "h" + strconv.Itoa(i)
		b.started(host, time.Now)
		b.allowRetry(host, t0)
	}
	assert.Equal(t, MaxHosts, b.hosts.len())
}

// An outage of one host does not spend the retries of another: after a
// storm against a, a lone failing request to b gets all its attempts.
func TestBudgetOutageOfOneHostSparesAnother(t *testing.T) {
	a := h.NewServer(t, h.Status(503))
	b := h.NewServer(t, h.Status(503), h.Status(503), h.Status(200))
	tr := NewTransport(a.Transport(), WithSleepTime(time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
	defer tr.CloseIdleConnections()
	for range 50 {
		resp, err := tr.RoundTrip(newReq(t, "GET", a.URL, nil))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	require.Less(t, a.Hits(), 3*50, "the budget stopped a's storm")
	resp, err := tr.RoundTrip(newReq(t, "GET", b.URL, nil))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 3, b.Hits(), "b still gets its retries")
}

// The RetryBudget contract, run against *Budget as the loop calls it: the
// same calls as the fake of budget_interface_test.go records, whether the
// loop sees a *Budget (which it calls directly) or only the interface
// (which also calls Attempted, a no-op for a Budget).
func TestBudgetContract(t *testing.T) {
	ways := []struct {
		name string
		wrap func(*Budget) RetryBudget
	}{
		{"*Budget", func(b *Budget) RetryBudget { return b }},
		{"through the interface", func(b *Budget) RetryBudget { return struct{ RetryBudget }{b} }},
	}
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Per host: 2 retries, and 1 more per 2 requests, per 10s.
				b := way.wrap(&Budget{Ratio: 0.5, MinPerSecond: 0.2, Window: 10 * time.Second})
				ok := &fakeBase{script: []reply{respond(200)}}
				down := &fakeBase{script: []reply{respond(503)}}
				hits := func(base *fakeBase, url string, attempts int) int {
					before := base.Calls()
					tr := NewTransport(base, append(fast, WithSleepTime(time.Millisecond), WithBudget(b), WithMaxAttempts(attempts))...)
					resp, err := tr.RoundTrip(newReq(t, "GET", url, nil))
					require.NoError(t, err)
					_ = resp.Body.Close()
					return base.Calls() - before
				}
				// Started counts each call for its host: 4 calls to a, then
				// a failing one: 2 + 0.5 × 5 = 4.5, so 4 retries.
				for range 4 {
					require.Equal(t, 1, hits(ok, "http://a/", 10))
				}
				assert.Equal(t, 1+4, hits(down, "http://a/", 10), "a's budget")
				assert.Equal(t, 1+2, hits(down, "http://b/", 10), "b's: 2 + 0.5 × 1, untouched by a")
				// AllowRetry is asked only when a retry would be made, and
				// a true answer spends one: 2 more calls, then 2 + 0.5 × 8
				// = 6, 4 spent.
				for range 2 {
					require.Equal(t, 1, hits(ok, "http://a/", 10))
				}
				assert.Equal(t, 2, hits(down, "http://a/", 2), "one retry; the last attempt asks for none (it would spend one)")
				assert.Equal(t, 2, hits(down, "http://a/", 10), "2 + 0.5 × 9 = 6.5: one retry left")
				// The window slides: 10s later, only new requests count.
				time.Sleep(10 * time.Second)
				assert.Equal(t, 1+2, hits(down, "http://a/", 10))
			})
		})
	}
}

var _ http.RoundTripper = (*Transport)(nil)
