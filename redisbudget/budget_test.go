package redisbudget_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/redisbudget"
	"github.com/retrykit/retry/redisbudget/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// denyAll is a fallback that allows no retry, so that every retry a test
// sees was allowed by the shared budget.
type denyAll struct{}

func (denyAll) Started(string)         {}
func (denyAll) Attempted(string, bool) {}
func (denyAll) AllowRetry(string) bool { return false }

// newClient returns a go-redis client of its own for addr, closed at the
// end of the test, that gives up on a command after 200ms.
func newClient(t *testing.T, addr string) *redis.Client { return newClientTB(t, addr) }

// newClientTB is newClient for tests and benchmarks.
func newClientTB(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newBudget is New, closed at the end of the test.
func newBudget(t *testing.T, c redis.UniversalClient, o redisbudget.Options) *redisbudget.Budget {
	b := redisbudget.New(c, o)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// counter is a loopback server that counts its hits and answers with the
// status code its answer function gives.
type counter struct {
	hits   atomic.Int64
	answer atomic.Value // func(*http.Request) (int, http.Header)
	srv    *httptest.Server
}

func newCounter(t *testing.T, answer func(*http.Request) (int, http.Header)) *counter {
	c := &counter{}
	c.answer.Store(answer)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		code, h := c.answer.Load().(func(*http.Request) (int, http.Header))(r)
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func always(code int) func(*http.Request) (int, http.Header) {
	return func(*http.Request) (int, http.Header) { return code, nil }
}

var quiet = retry.WithLogger(slog.New(slog.DiscardHandler))

// get sends a GET through tr and closes the response.
func get(t *testing.T, tr http.RoundTripper, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp, err
}

// waitFor polls cond every 5ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newFleet returns procs processes' worth of Budgets on addr, each with its
// own client, and a Transport on each that makes up to attempts attempts,
// 1ms apart.
func newFleet(t *testing.T, addr string, procs int, o redisbudget.Options, attempts int) ([]*redisbudget.Budget, []*retry.Transport) {
	var budgets []*redisbudget.Budget
	var trs []*retry.Transport
	for range procs {
		b := newBudget(t, newClient(t, addr), o)
		budgets = append(budgets, b)
		trs = append(trs, retry.NewTransport(nil, retry.WithBudget(b), retry.WithMaxAttempts(attempts),
			retry.WithSleepTime(time.Millisecond), retry.WithMaxDelay(2*time.Millisecond), quiet))
	}
	return budgets, trs
}

func TestOptionsValidate(t *testing.T) {
	client := newClient(t, "127.0.0.1:1") // never dialled
	for _, tc := range []struct {
		o    redisbudget.Options
		name string
	}{
		{redisbudget.Options{Prefix: "a{b"}, "Prefix"},
		{redisbudget.Options{Ratio: -1}, "Ratio"},
		{redisbudget.Options{MinPerSecond: -0.5}, "MinPerSecond"},
		{redisbudget.Options{Window: -time.Second}, "Window"},
		{redisbudget.Options{Window: time.Millisecond}, "Window"},
		{redisbudget.Options{SyncInterval: -time.Second}, "SyncInterval"},
		{redisbudget.Options{Window: time.Second, SyncInterval: 200 * time.Millisecond}, "SyncInterval"},
	} {
		err := tc.o.Validate()
		require.ErrorIs(t, err, redisbudget.ErrInvalidOptions)
		assert.Contains(t, err.Error(), tc.name)
		assert.PanicsWithError(t, err.Error(), func() { redisbudget.New(client, tc.o) })
	}
	assert.NoError(t, redisbudget.Options{}.Validate())
	assert.PanicsWithValue(t, "redisbudget.New: nil client", func() { redisbudget.New(nil, redisbudget.Options{}) })
}

// A nil *Budget given to WithBudget is no budget: every retry is made.
func TestNilBudgetAllowsEveryRetry(t *testing.T) {
	srv := newCounter(t, always(http.StatusServiceUnavailable))
	var b *redisbudget.Budget
	tr := retry.NewTransport(nil, retry.WithBudget(b), retry.WithMaxAttempts(3), retry.WithSleepTime(time.Millisecond), quiet)
	for range 5 {
		_, err := get(t, tr, srv.srv.URL)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(15), srv.hits.Load())
	assert.True(t, b.CoolingUntil("x").IsZero())
}

// Twenty processes' worth of Transports, each with its own client and
// Budget, retry a dead host: the fleet's retries stay within the fleet's
// budget (plus the documented worst case), far below what twenty budgets
// of their own would allow.
func TestFleetRetriesStayWithinTheFleetBudget(t *testing.T) {
	rs := redistest.Start(t)
	srv := newCounter(t, always(http.StatusServiceUnavailable))
	const procs = 20
	o := redisbudget.Options{Prefix: "fleet", Ratio: 0.02, MinPerSecond: 20, Window: time.Second,
		SyncInterval: 20 * time.Millisecond, Fallback: denyAll{}}
	budgets, trs := newFleet(t, rs.Addr(), procs, o, 4)
	// One request each makes the host known to every Budget; then wait
	// until all have synced it.
	for _, tr := range trs {
		_, _ = get(t, tr, srv.srv.URL)
	}
	time.Sleep(3 * o.SyncInterval)
	for _, b := range budgets {
		require.False(t, b.Stats().FallingBack, "every Budget is on Redis")
	}

	// A Window of traffic: 20 processes, 1000 requests in all.
	srv.hits.Store(0)
	start := time.Now()
	var wg sync.WaitGroup
	var requests atomic.Int64
	for i, tr := range trs {
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for range 50 {
				<-tick.C
				requests.Add(1)
				_, _ = get(t, tr, srv.srv.URL)
			}
			_ = i
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	retries := float64(srv.hits.Load() - requests.Load())
	windows := max(elapsed.Seconds()/o.Window.Seconds(), 1)
	// The rule, over the time the traffic took (slightly more than a
	// Window, so the window's rule counted over the whole run).
	allowed := (o.MinPerSecond*o.Window.Seconds())*windows + o.Ratio*float64(requests.Load())
	own := procs * allowed // twenty budgets of their own, each with these rules
	t.Logf("%d requests in %v: %.0f retries; fleet rule %.0f, documented bound %.0f, twenty budgets of their own %.0f",
		requests.Load(), elapsed.Round(time.Millisecond), retries, allowed, 1.5*allowed, own)
	assert.LessOrEqual(t, retries, 1.5*allowed, "within the fleet's budget and its documented overshoot")
	assert.Greater(t, retries, 0.3*allowed, "the fleet gets its budget's retries")
}

// A Retry-After seen by one process holds off another within one
// SyncInterval (and a round trip): its next request waits for the end.
func TestCooldownSharedAcrossProcesses(t *testing.T) {
	rs := redistest.Start(t)
	var busy atomic.Bool
	srv := newCounter(t, func(*http.Request) (int, http.Header) {
		if busy.Load() {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
		}
		return http.StatusOK, nil
	})
	o := redisbudget.Options{Prefix: "cool", SyncInterval: 50 * time.Millisecond}
	ba := newBudget(t, newClient(t, rs.Addr()), o)
	bb := newBudget(t, newClient(t, rs.Addr()), o)
	a := retry.NewTransport(nil, retry.WithBudget(ba), retry.WithMaxAttempts(1), quiet)
	b := retry.NewTransport(nil, retry.WithBudget(bb), retry.WithMaxAttempts(1), quiet)
	host := strings.TrimPrefix(srv.srv.URL, "http://")
	// A process learns the cooldowns of the hosts it sends to: one request
	// each, and both are on Redis.
	for _, tr := range []http.RoundTripper{a, b} {
		_, err := get(t, tr, srv.srv.URL)
		require.NoError(t, err)
	}
	waitFor(t, time.Second, "both Budgets on Redis", func() bool { return !ba.Stats().FallingBack && !bb.Stats().FallingBack })

	busy.Store(true)
	seen := time.Now()
	resp, err := get(t, a, srv.srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.False(t, ba.CoolingUntil(host).IsZero(), "the process that saw it knows at once")
	waitFor(t, o.SyncInterval+150*time.Millisecond, "the other process learns the cooldown",
		func() bool { return !bb.CoolingUntil(host).IsZero() })
	learned := time.Since(seen)
	end := bb.CoolingUntil(host)
	assert.WithinDuration(t, seen.Add(time.Second), end, 150*time.Millisecond, "the end is the Retry-After's")
	t.Logf("learned after %v", learned)

	busy.Store(false)
	hits := srv.hits.Load()
	resp, err = get(t, b, srv.srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Now(), end, "the other process's request waited for the end")
	assert.Equal(t, hits+1, srv.hits.Load())

	// The key expires by itself with the cooldown.
	c := newClient(t, rs.Addr())
	keys, err := c.Keys(context.Background(), "cool:*:cool").Result()
	require.NoError(t, err)
	assert.Empty(t, keys, "the cooldown's key is gone once it ended")
}

// captured is a slog handler that keeps the lines logged.
type captured struct {
	mu    sync.Mutex
	lines bytes.Buffer
}

func (c *captured) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{c}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func (c *captured) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines.String()
}

type lockedWriter struct{ c *captured }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.lines.Write(p)
}

// Redis killed mid-run: requests go on at their own pace, the fallback
// decides, and when Redis is back (empty) the Budget is back on it and
// refills it; flushed, likewise.
func TestRedisKilledRestartedFlushed(t *testing.T) {
	rs := redistest.Start(t)
	srv := newCounter(t, always(http.StatusOK))
	logs := &captured{}
	o := redisbudget.Options{Prefix: "crash", SyncInterval: 20 * time.Millisecond, Logger: logs.logger()}
	bud := newBudget(t, newClient(t, rs.Addr()), o)
	tr := retry.NewTransport(nil, retry.WithBudget(bud), quiet)
	c := newClient(t, rs.Addr())

	// Steady traffic while Redis dies and comes back; every request is
	// timed.
	var stop atomic.Bool
	var slowest atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			start := time.Now()
			if _, err := get(t, tr, srv.srv.URL); err != nil {
				failed.Add(1)
			}
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()

	waitFor(t, time.Second, "on Redis", func() bool { return !bud.Stats().FallingBack })
	requestKeys := func() int {
		keys, _ := c.Keys(context.Background(), "crash:*:q:*").Result()
		return len(keys)
	}
	waitFor(t, time.Second, "counts in Redis", func() bool { return requestKeys() > 0 })

	require.NoError(t, rs.Kill())
	waitFor(t, time.Second, "falls back", func() bool { return bud.Stats().FallingBack })
	time.Sleep(100 * time.Millisecond) // requests go on without Redis
	require.NoError(t, rs.Restart())
	waitFor(t, 2*time.Second, "back on Redis", func() bool { return !bud.Stats().FallingBack })
	waitFor(t, time.Second, "counts refilled", func() bool { return requestKeys() > 0 })

	require.NoError(t, c.FlushAll(context.Background()).Err())
	waitFor(t, time.Second, "counts refilled after a flush", func() bool { return requestKeys() > 0 })
	assert.False(t, bud.Stats().FallingBack)

	stop.Store(true)
	wg.Wait()
	assert.Zero(t, failed.Load(), "no request failed because of Redis")
	assert.Less(t, time.Duration(slowest.Load()), 100*time.Millisecond,
		"no request waited on Redis (a loopback 200 takes well under a millisecond)")
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "level=WARN"), out)
	assert.Contains(t, out, "Redis unreachable")
	assert.GreaterOrEqual(t, strings.Count(out, "back on Redis"), 1, out)
	assert.Greater(t, bud.Stats().Failures, uint64(0))
}

// A Redis that does not answer (a paused proxy) slows no request; the
// Budget falls back, and comes back when Redis answers again.
func TestSlowRedisSlowsNoRequest(t *testing.T) {
	rs := redistest.Start(t)
	proxy, err := redistest.NewProxy(rs.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	srv := newCounter(t, always(http.StatusServiceUnavailable))
	o := redisbudget.Options{Prefix: "slow", SyncInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	bud := newBudget(t, newClient(t, proxy.Addr()), o)
	tr := retry.NewTransport(nil, retry.WithBudget(bud), retry.WithSleepTime(time.Millisecond),
		retry.WithMaxDelay(time.Millisecond), quiet)
	_, _ = get(t, tr, srv.srv.URL)
	waitFor(t, time.Second, "on Redis", func() bool { return !bud.Stats().FallingBack })

	proxy.Pause()
	var slowest time.Duration
	for range 50 {
		start := time.Now()
		_, _ = get(t, tr, srv.srv.URL)
		slowest = max(slowest, time.Since(start))
		time.Sleep(4 * time.Millisecond)
	}
	assert.True(t, bud.Stats().FallingBack, "no answer for three intervals: the fallback decides")
	assert.Less(t, slowest, 50*time.Millisecond, "requests never wait on Redis (3 attempts of a loopback 503, 1ms apart)")
	proxy.Resume()
	waitFor(t, 2*time.Second, "back on Redis", func() bool { return !bud.Stats().FallingBack })
}

// Keys hold the prefix and the host only; every key expires by itself.
func TestKeysHoldTheHostOnlyAndExpire(t *testing.T) {
	rs := redistest.Start(t)
	srv := newCounter(t, func(*http.Request) (int, http.Header) {
		return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
	})
	bud := newBudget(t, newClient(t, rs.Addr()), redisbudget.Options{Prefix: "keys", SyncInterval: 20 * time.Millisecond})
	tr := retry.NewTransport(nil, retry.WithBudget(bud), retry.WithMaxAttempts(2), quiet)
	u := strings.Replace(srv.srv.URL, "http://", "http://user:hunter2@", 1) + "/secret-path?token=s3cr3t"
	req, err := http.NewRequest("GET", u, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok3n")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	waitFor(t, time.Second, "synced", func() bool { return bud.Stats().Syncs > 2 })
	time.Sleep(50 * time.Millisecond)

	c := newClient(t, rs.Addr())
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	host := regexp.QuoteMeta(strings.TrimPrefix(srv.srv.URL, "http://"))
	shape := regexp.MustCompile(`^keys:\{` + host + `\}:((q|r):\d+|p|cool)$`)
	kinds := map[string]bool{}
	for _, k := range keys {
		assert.Regexp(t, shape, k)
		for _, secret := range []string{"user", "hunter2", "secret", "s3cr3t", "tok3n"} {
			assert.NotContains(t, k, secret)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, time.Duration(0), "%s expires by itself", k)
		kinds[shape.FindStringSubmatch(k)[1][:1]] = true
		typ, err := c.Type(ctx, k).Result()
		require.NoError(t, err)
		switch typ {
		case "string":
			v, err := c.Get(ctx, k).Result()
			require.NoError(t, err)
			assert.Regexp(t, `^\d+$`, v)
		case "zset":
			members, err := c.ZRange(ctx, k, 0, -1).Result()
			require.NoError(t, err)
			for _, m := range members {
				assert.Regexp(t, `^[0-9a-f]{16}$`, m)
			}
		}
	}
	assert.Equal(t, map[string]bool{"q": true, "r": true, "p": true, "c": true}, kinds, "requests, retries, senders and the cooldown: %v", keys)
}
