package redisbudget_test

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/retrykit/retry/redisbudget"
	"github.com/retrykit/retry/redisbudget/redistest"
)

// A host new to the processes of a fleet is decided by the fleet's budget,
// not by each process's Fallback (which would give 20 × 3 retries).
func TestNewHostIsDecidedByTheFleet(t *testing.T) {
	rs := redistest.Start(t)
	dead := newCounter(t, always(http.StatusServiceUnavailable))
	ok := newCounter(t, always(http.StatusOK))
	const procs = 20
	o := redisbudget.Options{Prefix: "newhost"} // defaults: floor 10 per 10s for the fleet
	bs, trs := newFleet(t, rs.Addr(), procs, o, 4)
	for i, tr := range trs {
		_, _ = get(t, tr, ok.srv.URL) // on Redis for another host
		waitFor(t, time.Second, "on Redis", func() bool { return !bs[i].Stats().FallingBack })
	}
	var wg sync.WaitGroup
	for _, tr := range trs {
		wg.Go(func() { _, _ = get(t, tr, dead.srv.URL) })
	}
	wg.Wait()
	retries := dead.hits.Load() - procs
	allowed := 1.0*10 + 0.1*procs
	t.Logf("retries %d, fleet rule %.0f, documented bound %.0f", retries, allowed, 1.5*allowed)
	assert.LessOrEqual(t, float64(retries), 1.5*allowed)
}

// Requests that hang for longer than two slots and then fail: every
// process still counts among the senders, so the shares add up to the
// fleet's headroom, not to twenty times it.
func TestSlowFailuresCountEverySender(t *testing.T) {
	rs := redistest.Start(t)
	var hang atomic.Bool
	srv := newCounter(t, func(*http.Request) (int, http.Header) {
		if hang.Load() {
			time.Sleep(350 * time.Millisecond)
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	const procs = 20
	o := redisbudget.Options{Prefix: "senders", Window: time.Second, SyncInterval: 10 * time.Millisecond,
		MinPerSecond: 2, Ratio: 0.1, Fallback: denyAll{}}
	bs, trs := newFleet(t, rs.Addr(), procs, o, 2)
	for _, tr := range trs {
		_, _ = get(t, tr, srv.srv.URL)
	}
	for _, b := range bs {
		waitFor(t, time.Second, "on Redis", func() bool { return !b.Stats().FallingBack })
	}
	time.Sleep(250 * time.Millisecond)
	hang.Store(true)
	srv.hits.Store(0)
	var wg sync.WaitGroup
	for _, tr := range trs {
		wg.Go(func() { _, _ = get(t, tr, srv.srv.URL) })
	}
	wg.Wait()
	retries := srv.hits.Load() - procs
	allowed := 2.0 + 0.1*2*procs
	t.Logf("retries %d, fleet rule %.0f, documented bound %.0f", retries, allowed, 1.5*allowed)
	assert.LessOrEqual(t, float64(retries), 1.5*allowed)
}

func sumKeys(t *testing.T, addr, pattern string) int {
	c := newClient(t, addr)
	ctx := context.Background()
	keys, err := c.Keys(ctx, pattern).Result()
	require.NoError(t, err)
	n := 0
	for _, k := range keys {
		v, _ := c.Get(ctx, k).Result()
		i, _ := strconv.Atoi(v)
		n += i
	}
	return n
}

// A sync that Redis ran but answered too late (DEBUG SLEEP) is not sent
// again: its counts are in Redis once.
func TestSyncAnsweredLateIsNotCountedTwice(t *testing.T) {
	rs := redistest.Start(t)
	o := redisbudget.Options{Prefix: "late", SyncInterval: 20 * time.Millisecond, Fallback: denyAll{}}
	b := newBudget(t, newClient(t, rs.Addr()), o)
	b.Started("h")
	waitFor(t, time.Second, "on Redis", func() bool { return !b.Stats().FallingBack })
	waitFor(t, time.Second, "counted", func() bool { return sumKeys(t, rs.Addr(), "late:*:q:*") == 1 })
	other := newClient(t, rs.Addr())
	other.Options().ReadTimeout = 2 * time.Second
	var wg sync.WaitGroup
	wg.Go(func() { _ = other.Do(context.Background(), "debug", "sleep", "0.3").Err() })
	time.Sleep(5 * time.Millisecond)
	for range 100 {
		b.Started("h")
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	got := sumKeys(t, rs.Addr(), "late:*:q:*")
	t.Logf("requests in Redis: %d (want 101); failures %d", got, b.Stats().Failures)
	assert.Equal(t, 101, got)
}

// Redis refuses connections from the start for five Windows: the requests
// counted meanwhile (nothing was sent) reach Redis scaled to a Window's
// worth.
func TestGapBeforeTheFirstSyncIsScaled(t *testing.T) {
	rs := redistest.Start(t)
	require.NoError(t, rs.Kill())
	o := redisbudget.Options{Prefix: "gap", Window: 100 * time.Millisecond, SyncInterval: 10 * time.Millisecond,
		Fallback: denyAll{}, Logger: quietLogger()}
	// One dial a command, so that a refused connection is the error.
	c := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true, DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	b := newBudget(t, c, o)
	for range 1000 {
		b.Started("h")
	}
	time.Sleep(500 * time.Millisecond) // 5 Windows
	require.NoError(t, rs.Restart())
	waitFor(t, 2*time.Second, "on Redis", func() bool { return !b.Stats().FallingBack })
	got := sumKeys(t, rs.Addr(), "gap:*:q:*")
	t.Logf("requests in Redis after a 5-Window gap: %d (a Window's worth would be ~200)", got)
	assert.Greater(t, got, 0, "the requests were kept for Redis")
	assert.LessOrEqual(t, got, 201, "scaled to a Window's worth (or less: the gap was at least five Windows)")
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// On a Redis Cluster, a host's keys share a hash tag, Do's empty host
// included (an empty tag is none: its MGET would fail with CROSSSLOT).
func TestRedisCluster(t *testing.T) {
	rs := redistest.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{rs.Addr()}, ContextTimeoutEnabled: true})
	defer c.Close()
	b := redisbudget.New(c, redisbudget.Options{Prefix: "cluster", SyncInterval: 20 * time.Millisecond, Logger: quietLogger()})
	defer b.Close()
	b.Started("a.example")
	time.Sleep(100 * time.Millisecond)
	t.Logf("host only: %+v", b.Stats())
	b.Started("")
	b.Started("a.example")
	time.Sleep(200 * time.Millisecond)
	t.Logf("with host \"\": %+v", b.Stats())
	keys, _ := c.Keys(t.Context(), "cluster:{a.example}:q:*").Result()
	n := 0
	for _, k := range keys {
		v, _ := c.Get(t.Context(), k).Int()
		n += v
	}
	t.Logf("a.example requests in Redis: %d (want 2)", n)
	assert.Equal(t, 2, n)
	assert.Zero(t, b.Stats().Failures)
	assert.False(t, b.Stats().FallingBack)
}
