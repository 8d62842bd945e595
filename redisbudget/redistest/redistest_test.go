package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a program that launches a server,
// prints its address and directory, and waits to be killed.
const helperEnv = "REDISTEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		s, err := Launch()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(s.Addr(), s.dir, s.pid())
		select {} // until killed
	}
	goleak.VerifyTestMain(m)
}

// pid returns the process id of the running server, 0 when it is down.
func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// newClient returns a go-redis client for addr that never retries, closed
// when the test ends.
func newClient(t *testing.T, addr string, readTimeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:        addr,
		MaxRetries:  -1,
		DialTimeout: time.Second,
		ReadTimeout: readTimeout,
		PoolSize:    2,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireRefused asserts that nothing listens on addr.
func requireRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if c != nil {
		_ = c.Close()
	}
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "dial %s", addr)
}

func TestLaunchAnswersOnLoopback(t *testing.T) {
	s := Start(t)
	host, _, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)

	ctx := context.Background()
	c := newClient(t, s.Addr(), time.Second)
	require.Equal(t, "PONG", c.Ping(ctx).Val())
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	assert.Equal(t, "v", c.Get(ctx, "k").Val())

	// No persistence: nothing configured to save.
	save, err := c.ConfigGet(ctx, "save").Result()
	require.NoError(t, err)
	assert.Equal(t, "", save["save"])
	aof, err := c.ConfigGet(ctx, "appendonly").Result()
	require.NoError(t, err)
	assert.Equal(t, "no", aof["appendonly"])
}

func TestDebugSleepIsEnabled(t *testing.T) {
	s := Start(t)
	c := newClient(t, s.Addr(), 2*time.Second)
	begin := time.Now()
	require.NoError(t, c.Do(context.Background(), "DEBUG", "SLEEP", "0.2").Err())
	assert.GreaterOrEqual(t, time.Since(begin), 200*time.Millisecond)
}

func TestKillRefusesConnections(t *testing.T) {
	s := Start(t)
	require.NoError(t, s.Kill())
	requireRefused(t, s.Addr())
	require.NoError(t, s.Kill(), "killing a killed server does nothing")
	requireRefused(t, s.Addr())
}

func TestRestartSameAddrEmptyData(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	ctx := context.Background()
	c := newClient(t, addr, time.Second)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	require.Error(t, s.Restart(), "restart while running")
	require.NoError(t, s.Kill())
	require.NoError(t, s.Restart())
	assert.Equal(t, addr, s.Addr())

	// The pooled connection died with the old process; the client redials.
	_ = c.Ping(ctx)
	_, err := c.Get(ctx, "k").Result()
	require.ErrorIs(t, err, redis.Nil, "data must not survive a restart")

	// A second crash and restart works the same way.
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	require.NoError(t, s.Kill())
	require.NoError(t, s.Restart())
	_ = c.Ping(ctx)
	_, err = c.Get(ctx, "k").Result()
	require.ErrorIs(t, err, redis.Nil)
}

func TestRestartFailsWhenPortTaken(t *testing.T) {
	s := Start(t)
	require.NoError(t, s.Kill())
	ln, err := net.Listen("tcp", s.Addr())
	require.NoError(t, err)

	err = s.Restart()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Address already in use", "the error quotes the server log")

	require.NoError(t, ln.Close())
	require.NoError(t, s.Restart(), "the server stays down and can be restarted")
	c := newClient(t, s.Addr(), time.Second)
	require.NoError(t, c.Ping(context.Background()).Err())
}

func TestCloseIsIdempotentAndCleansUp(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := Launch()
	if errors.Is(err, ErrNoRedis) {
		t.Skip(err)
	}
	require.NoError(t, err)
	_, err = os.Stat(s.dir)
	require.NoError(t, err)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	requireRefused(t, s.Addr())
	_, err = os.Stat(s.dir)
	require.ErrorIs(t, err, os.ErrNotExist, "temp dir removed")
	require.Error(t, s.Kill())
	require.Error(t, s.Restart())

	// Close after Kill is fine too.
	s, err = Launch()
	require.NoError(t, err)
	require.NoError(t, s.Kill())
	require.NoError(t, s.Close())
	_, err = os.Stat(s.dir)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestProxyPassesTraffic(t *testing.T) {
	s := Start(t)
	p, err := NewProxy(s.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	assert.NotEqual(t, s.Addr(), p.Addr())
	assert.True(t, strings.HasPrefix(p.Addr(), "127.0.0.1:"), p.Addr())

	ctx := context.Background()
	c := newClient(t, p.Addr(), time.Second)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	assert.Equal(t, "v", c.Get(ctx, "k").Val())

	// A large value crosses in several chunks, both ways.
	big := strings.Repeat("x", 1<<20)
	require.NoError(t, c.Set(ctx, "big", big, 0).Err())
	assert.Equal(t, big, c.Get(ctx, "big").Val())
}

func TestProxyPauseTimesOutThenResumes(t *testing.T) {
	s := Start(t)
	p, err := NewProxy(s.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })

	ctx := context.Background()
	c := newClient(t, p.Addr(), 200*time.Millisecond)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	p.Pause()
	begin := time.Now()
	err = c.Get(ctx, "k").Err()
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "want a timeout, got %v", err)
	assert.GreaterOrEqual(t, time.Since(begin), 200*time.Millisecond)

	p.Resume()
	assert.Equal(t, "v", c.Get(ctx, "k").Val())
}

func TestProxyPauseHoldsBytes(t *testing.T) {
	s := Start(t)
	p, err := NewProxy(s.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })

	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()
	r := bufio.NewReader(conn)

	p.Pause()
	p.Pause() // twice is the same as once
	_, err = io.WriteString(conn, "PING\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = r.ReadString('\n')
	var ne net.Error
	require.ErrorAs(t, err, &ne, "no answer while paused")
	require.True(t, ne.Timeout())

	p.Resume()
	p.Resume() // twice is the same as once
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "+PONG\r\n", line, "the held PING reached the server")
}

func TestProxyCloseEndsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := Launch()
	if errors.Is(err, ErrNoRedis) {
		t.Skip(err)
	}
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()

	p, err := NewProxy(s.Addr())
	require.NoError(t, err)
	idle, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer idle.Close()
	held, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer held.Close()
	p.Pause()
	_, err = io.WriteString(held, "PING\r\n")
	require.NoError(t, err)

	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	requireRefused(t, p.Addr())
	for _, c := range []net.Conn{idle, held} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "closed by the proxy")
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not timed out: %v", err)
	}
}

func TestProxyToDeadTargetClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	p, err := NewProxy(dead)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
}

// fakeTB records how Start gives up; any other method panics (nil TB).
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }
func (f *fakeTB) Cleanup(func())    { panic("Cleanup without a server") }

func TestStartWithoutRedis(t *testing.T) {
	orig := findRedis
	t.Cleanup(func() { findRedis = orig })
	findRedis = func() (string, error) { return "", fmt.Errorf("%w: test", ErrNoRedis) }

	_, err := Launch()
	require.ErrorIs(t, err, ErrNoRedis)

	t.Setenv(E2EEnv, "")
	tb := &fakeTB{}
	assert.Nil(t, Start(tb))
	assert.Contains(t, tb.skipped, "redis-server not found; install Debian's redis-server or set ")
	assert.Empty(t, tb.failed)

	t.Setenv(E2EEnv, "1")
	tb = &fakeTB{}
	assert.Nil(t, Start(tb))
	assert.Contains(t, tb.failed, "redis-server not found")
	assert.Empty(t, tb.skipped)
}
