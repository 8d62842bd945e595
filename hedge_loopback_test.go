package retry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Hedging end to end: a hedging Transport over a real net/http Transport
// and a real server on 127.0.0.1 (HTTP/1.1, and HTTP/2 where it says so).
// The synctest tests in hedge_test.go time the rules; these check what only
// real connections show: that a cancelled attempt ends at the server, that
// the winner's body streams whole after RoundTrip returned, that every
// attempt's body arrives intact under concurrency.
//
// Nothing here rests on a race between timers: where a test needs both
// attempts of a round in flight, the handlers wait for each other
// (hlSignal), and every wait is capped by hlHangCap, so that a broken
// Transport makes a test fail (slowly) instead of hang.

const (
	hlAttempt = "X-Attempt"        // each attempt's number, by WithAttemptHeader
	hlServed  = "X-Served-Attempt" // the attempt a response answers
	hlSum     = "X-Sum"            // hex SHA-256 of the request body
	// hlHangCap bounds every wait of a handler or of the tracker.
	hlHangCap = 3 * time.Second
	// hlQuick bounds a RoundTrip that must not wait for a hanging attempt:
	// far above what it takes, below hlHangCap.
	hlQuick = 2 * time.Second
)

// hlRig is a loopback server and a hedging Transport over a tracked base.
type hlRig struct {
	srv   *httptest.Server
	done  chan struct{} // closed at shutdown: waiting handlers return
	track *hlTracker
	tr    *Transport
	stop  sync.Once
}

// newHLRig returns a rig to start; its cleanup shuts it down, then checks
// with goleak that no goroutine started since is left.
func newHLRig(t *testing.T) *hlRig {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	g := &hlRig{done: make(chan struct{})}
	t.Cleanup(func() {
		g.shutdown()
		goleak.VerifyNone(t, ignore)
	})
	return g
}

// start starts the server (HTTP/2 over TLS if h2) and the Transport, which
// numbers its attempts in hlAttempt and waits 1 ms between rounds.
func (g *hlRig) start(t *testing.T, h2 bool, handler http.HandlerFunc, opts ...Option) {
	t.Helper()
	g.srv = httptest.NewUnstartedServer(handler)
	g.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if h2 {
		g.srv.EnableHTTP2 = true
		g.srv.StartTLS()
	} else {
		g.srv.Start()
	}
	require.True(t, strings.HasPrefix(g.srv.Listener.Addr().String(), "127.0.0.1:"), "loopback only")
	g.track = &hlTracker{base: g.srv.Client().Transport.(*http.Transport).Clone()}
	g.tr = NewTransport(g.track, append([]Option{WithAttemptHeader(hlAttempt), WithSleepTime(time.Millisecond), discard}, opts...)...)
}

func (g *hlRig) shutdown() {
	g.stop.Do(func() {
		close(g.done)
		if g.srv == nil {
			return
		}
		g.tr.CloseIdleConnections()
		g.srv.Close()
		g.tr.CloseIdleConnections()
	})
}

// hlEnd says how a handler's wait ended.
type hlEnd int

const (
	hlCtxEnded  hlEnd = iota + 1 // the request's context ended: the client gave up
	hlSignalled                  // the signal fired
	hlTimedOut                   // the time ran out, or the rig shut down
)

// wait blocks until r's context ends, signal is closed (nil: never), the
// rig shuts down or max passes.
func (g *hlRig) wait(r *http.Request, signal <-chan struct{}, max time.Duration) hlEnd {
	timer := time.NewTimer(max)
	defer timer.Stop()
	select {
	case <-r.Context().Done():
		return hlCtxEnded
	case <-signal:
		return hlSignalled
	case <-g.done:
	case <-timer.C:
	}
	return hlTimedOut
}

// hlSignal is a one-shot event that may be fired any number of times.
type hlSignal struct {
	once sync.Once
	ch   chan struct{}
}

func newHLSignal() *hlSignal { return &hlSignal{ch: make(chan struct{})} }

func (s *hlSignal) fire() { s.once.Do(func() { close(s.ch) }) }

func (s *hlSignal) fired() bool {
	select {
	case <-s.ch:
		return true
	default:
		return false
	}
}

// hlTracker is the hedging Transport's base: it counts the attempts it is
// given and those still in its RoundTrip, and wraps each response's body
// to see whether it gets closed.
type hlTracker struct {
	base *http.Transport
	// hold, if set, runs once the base has returned, before the tracker
	// does: it can make an attempt that has its answer look unanswered, or
	// one that was cancelled take a while to give up.
	hold     func(r *http.Request, err error)
	calls    atomic.Int32
	inFlight atomic.Int32
	mu       sync.Mutex
	bodies   []*hlBody
}

// hlBody is a response body that records its Close.
type hlBody struct {
	io.ReadCloser
	attempt string
	closed  atomic.Bool
}

func (b *hlBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

func (k *hlTracker) RoundTrip(r *http.Request) (*http.Response, error) {
	k.calls.Add(1)
	k.inFlight.Add(1)
	defer k.inFlight.Add(-1)
	resp, err := k.base.RoundTrip(r)
	if k.hold != nil {
		k.hold(r, err)
	}
	if err != nil {
		return nil, err
	}
	b := &hlBody{ReadCloser: resp.Body, attempt: r.Header.Get(hlAttempt)}
	resp.Body = b
	k.mu.Lock()
	k.bodies = append(k.bodies, b)
	k.mu.Unlock()
	return resp, nil
}

func (k *hlTracker) CloseIdleConnections() { k.base.CloseIdleConnections() }

// all returns the bodies of every response so far.
func (k *hlTracker) all() []*hlBody {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*hlBody(nil), k.bodies...)
}

// body returns the body of attempt n's response, nil if it got none.
func (k *hlTracker) body(n string) *hlBody {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range k.bodies {
		if b.attempt == n {
			return b
		}
	}
	return nil
}

// hlPayload returns n random bytes drawn from seed.
func hlPayload(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	p := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(p)
	return p
}

func hlHash(p []byte) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

// Losers are cancelled: attempt 1 hangs at the server, the hedge answers at
// once. RoundTrip returns the hedge's response without waiting for attempt
// 1, having ended it: no base RoundTrip is left running, the server sees
// attempt 1's context end, and a response attempt 1 still produced is
// closed.
func TestHedgeLoopbackLosersCancelled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h2      bool
		headers bool // attempt 1 answers headers, which the round sees only once it cancelled it
	}{
		{"http1/before headers", false, false},
		{"http1/after headers", false, true},
		{"http2/before headers", true, false},
		{"http2/after headers", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testHedgeLosersCancelled(t, tc.h2, tc.headers) })
	}
}

func testHedgeLosersCancelled(t *testing.T, h2, headers bool) {
	g := newHLRig(t)
	firstIn := newHLSignal()
	var loserEnded, loserTimedOut atomic.Bool
	g.start(t, h2, func(w http.ResponseWriter, r *http.Request) {
		n := r.Header.Get(hlAttempt)
		w.Header().Set(hlServed, n)
		if n != "1" {
			// Answer once attempt 1 is surely at the server (and, with
			// headers, its response at the client), so that its
			// cancellation has something to end.
			g.wait(r, firstIn.ch, hlHangCap)
			_, _ = io.WriteString(w, "hedge")
			return
		}
		if !headers {
			firstIn.fire()
		} else {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "first, and more to come")
			w.(http.Flusher).Flush()
		}
		switch g.wait(r, nil, hlHangCap) {
		case hlCtxEnded:
			loserEnded.Store(true)
		default:
			loserTimedOut.Store(true)
		}
	}, WithHedge(&Hedge{Delay: 5 * time.Millisecond}))
	if headers {
		g.track.hold = func(r *http.Request, err error) {
			if err != nil || r.Header.Get(hlAttempt) != "1" {
				return
			}
			// Keep attempt 1's response from the round until the round
			// cancels the attempt: a loser that produces a response.
			firstIn.fire()
			timer := time.NewTimer(hlHangCap)
			defer timer.Stop()
			select {
			case <-r.Context().Done():
			case <-g.done:
			case <-timer.C:
			}
		}
	}

	start := time.Now()
	resp, err := g.tr.RoundTrip(newReq(t, http.MethodGet, g.srv.URL, nil))
	elapsed := time.Since(start)
	require.NoError(t, err)
	inFlight := g.track.inFlight.Load()
	loserBody := g.track.body("1")
	loserClosed := loserBody != nil && loserBody.closed.Load()

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "2", resp.Header.Get(hlServed), "the hedge's response")
	assert.Equal(t, "hedge", string(body))
	if h2 {
		assert.Equal(t, "HTTP/2.0", resp.Proto)
	}
	assert.Less(t, elapsed, hlQuick, "RoundTrip waited for the hanging attempt 1")
	assert.Zero(t, inFlight, "RoundTrip returned while an attempt was still in the base RoundTripper")
	assert.EqualValues(t, 2, g.track.calls.Load(), "attempt 1 and one hedge")
	if headers {
		require.NotNil(t, loserBody, "attempt 1 got its response")
		assert.True(t, loserClosed, "the loser's response was closed before RoundTrip returned")
	} else {
		assert.Nil(t, loserBody, "attempt 1 got no response")
	}
	assert.Eventually(t, loserEnded.Load, time.Second, 5*time.Millisecond, "the server saw attempt 1's context end")
	assert.False(t, loserTimedOut.Load(), "attempt 1 ran until the handler's cap")
	for _, b := range g.track.all() {
		assert.True(t, b.closed.Load(), "attempt %s's response closed", b.attempt)
	}
}

// The caller gives up while a round has three attempts in flight (attempt
// 1 and two hedges, MaxHedges 2): RoundTrip returns the context's error at
// once, yet only once every attempt has ended, and the server sees every
// attempt's context end.
func TestHedgeLoopbackCallerCancelEndsEveryAttempt(t *testing.T) {
	g := newHLRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var arrived, ended atomic.Int32
	g.start(t, false, func(_ http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 3 {
			cancel() // every attempt is at the server: the caller gives up
		}
		if g.wait(r, nil, hlHangCap) == hlCtxEnded {
			ended.Add(1)
		}
	}, WithHedge(&Hedge{Delay: 5 * time.Millisecond, MaxHedges: 2}))
	// The hedges take a while to give up, so that attempt 1's end comes
	// first: RoundTrip must still wait for theirs.
	g.track.hold = func(r *http.Request, _ error) {
		if r.Header.Get(hlAttempt) != "1" && r.Context().Err() != nil {
			time.Sleep(50 * time.Millisecond)
		}
	}

	start := time.Now()
	resp, err := g.tr.RoundTrip(newReq(t, http.MethodGet, g.srv.URL, nil).WithContext(ctx))
	elapsed := time.Since(start)
	inFlight := g.track.inFlight.Load()
	if resp != nil {
		_ = resp.Body.Close()
	}
	assert.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, elapsed, hlQuick, "RoundTrip waited for the hanging attempts")
	assert.Zero(t, inFlight, "RoundTrip returned while an attempt was still in the base RoundTripper")
	assert.EqualValues(t, 3, g.track.calls.Load(), "attempt 1 and two hedges")
	assert.Eventually(t, func() bool { return ended.Load() == 3 }, time.Second, 5*time.Millisecond, "the server saw every attempt's context end")
}

// The winner's slow 512 KiB body arrives whole: its context lives until
// the caller closes the body, long after RoundTrip returned (failsafe-go
// #65 and #123 cancelled it first). The server trickles it out while the
// other attempt of the round hangs, and the client reads it slowly.
func TestHedgeLoopbackWinnerSlowBodyWhole(t *testing.T) {
	for _, tc := range []struct {
		name    string
		winner  string
		h2      bool
		readFor time.Duration
		opts    []Option
	}{
		{name: "http1/hedge wins", winner: "2"},
		{name: "http1/first attempt wins", winner: "1"},
		{name: "http2/hedge wins", winner: "2", h2: true},
		{name: "http2/first attempt wins", winner: "1", h2: true},
		// The attempt timeout bounds the wait for headers only: reading
		// the body takes longer than it.
		{name: "http1/hedge wins/attempt timeout", winner: "2", readFor: hlSlowBodyTimeout, opts: []Option{WithAttemptTimeout(hlSlowBodyTimeout)}},
	} {
		t.Run(tc.name, func(t *testing.T) { testHedgeSlowBody(t, tc.winner, tc.h2, tc.readFor, tc.opts...) })
	}
}

// hlSlowBodyTimeout is the attempt timeout of the slow body's test: ample
// for the headers, shorter than the reading of the body there.
const hlSlowBodyTimeout = 150 * time.Millisecond

// testHedgeSlowBody runs a round whose winner is attempt winner and reads
// its body slowly: for longer than readFor if that is set, else in some
// 40 ms.
func testHedgeSlowBody(t *testing.T, winner string, h2 bool, readFor time.Duration, opts ...Option) {
	const size, chunk = 512 << 10, 16 << 10
	payload := hlPayload(size, size)
	g := newHLRig(t)
	loserIn := newHLSignal()
	var loserEnded atomic.Bool
	g.start(t, h2, func(w http.ResponseWriter, r *http.Request) {
		n := r.Header.Get(hlAttempt)
		if n != winner {
			loserIn.fire()
			if g.wait(r, nil, hlHangCap) == hlCtxEnded {
				loserEnded.Store(true)
			}
			return
		}
		// Answer once the loser is in flight too: a real hedged round.
		if g.wait(r, loserIn.ch, hlHangCap) != hlSignalled {
			return
		}
		w.Header().Set(hlServed, n)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(http.StatusOK)
		for off := 0; off < size; off += chunk {
			if _, err := w.Write(payload[off : off+chunk]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	}, append(opts, WithHedge(&Hedge{Delay: 5 * time.Millisecond}))...)

	resp, err := g.tr.RoundTrip(newReq(t, http.MethodGet, g.srv.URL, nil))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, winner, resp.Header.Get(hlServed))
	assert.EqualValues(t, 2, g.track.calls.Load(), "attempt 1 and one hedge")
	if h2 {
		assert.Equal(t, "HTTP/2.0", resp.Proto)
	}

	h := sha256.New()
	buf := make([]byte, 4<<10)
	total := 0
	var readErr error
	// 128 reads of 4 KiB: a pause of 1 ms every 4 reads, or one of
	// readFor/100 after each (at least readFor in all).
	pause, every := time.Millisecond, 4
	if readFor > 0 {
		pause, every = readFor/100, 1
	}
	readStart := time.Now()
	for i := 0; ; i++ {
		n, err := resp.Body.Read(buf)
		h.Write(buf[:n])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		if i%every == every-1 {
			time.Sleep(pause)
		}
	}
	readTook := time.Since(readStart)
	require.NoError(t, readErr, "the winner's body broke off after %d of %d bytes", total, size)
	assert.Equal(t, size, total)
	assert.Equal(t, hlHash(payload), hex.EncodeToString(h.Sum(nil)), "the winner's body, byte for byte")
	assert.Greater(t, readTook, readFor, "the body was read for long enough")
	assert.Eventually(t, loserEnded.Load, time.Second, 5*time.Millisecond, "the server saw the loser's context end")
}

// 64 goroutines share one hedging Transport and PUT distinct random bodies,
// half with GetBody and half opaque (buffered), to a server whose latency
// is random: some attempts are slow, so hedges fire. The server checks
// every attempt's body against the hash the client sent, and every
// response is checked by the client: no attempt may get another's body, a
// truncated one or a shared reader's leftovers.
func TestHedgeLoopbackConcurrentBodies(t *testing.T) {
	const goroutines, perGoroutine = 64, 3
	const requests = goroutines * perGoroutine
	g := newHLRig(t)
	var hits, hedgesIn, mismatches atomic.Int32
	var wins, cancelled, otherEnds, hedgeAttempts atomic.Int32
	g.start(t, false, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get(hlAttempt) != "1" {
			hedgesIn.Add(1)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // a loser cancelled while it still sent its body
		}
		got := hlHash(body)
		if got != r.Header.Get(hlSum) {
			mismatches.Add(1)
			http.Error(w, "the body does not match "+hlSum, http.StatusUnprocessableEntity)
			return
		}
		if rand.N(5) == 0 {
			g.wait(r, nil, 40*time.Millisecond) // slow: a hedge goes out
		} else if rand.N(2) == 0 {
			time.Sleep(time.Duration(rand.N(1000)) * time.Microsecond)
		}
		w.Header().Set(hlServed, r.Header.Get(hlAttempt))
		_, _ = io.WriteString(w, got)
	}, WithHedge(&Hedge{Delay: 5 * time.Millisecond}), WithBudget(nil), WithOnAttempt(func(e Event) {
		switch e.Category {
		case Success:
			wins.Add(1)
		case Canceled:
			cancelled.Add(1)
		default:
			otherEnds.Add(1)
		}
		if e.Hedge {
			hedgeAttempts.Add(1)
		}
	}))

	var failures atomic.Int32
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for j := range perGoroutine {
				payload := hlPayload(uint64(i*perGoroutine+j), 1<<10+rand.N(7<<10))
				want := hlHash(payload)
				opaque := (i+j)%2 == 1
				var body io.Reader = bytes.NewReader(payload) // GetBody
				if opaque {
					body = io.NopCloser(bytes.NewReader(payload)) // no GetBody: buffered
				}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, g.srv.URL, body)
				if !assert.NoError(t, err) || !assert.Equal(t, opaque, req.GetBody == nil) {
					failures.Add(1)
					continue
				}
				req.Header.Set(hlSum, want)
				resp, err := g.tr.RoundTrip(req)
				if !assert.NoError(t, err) {
					failures.Add(1)
					continue
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if !assert.NoError(t, err) || !assert.Equal(t, http.StatusOK, resp.StatusCode) ||
					!assert.Equal(t, want, string(got), "the response to this request's body") {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()

	assert.Zero(t, failures.Load(), "failed RoundTrips")
	assert.Zero(t, mismatches.Load(), "attempts whose body the server got wrong")
	assert.Positive(t, hedgesIn.Load(), "hedges reached the server")
	assert.Greater(t, int(hits.Load()), requests, "server hits over requests")
	assert.EqualValues(t, requests, wins.Load(), "one successful attempt per request")
	assert.Zero(t, otherEnds.Load(), "every other attempt was a cancelled loser")
	assert.Positive(t, hedgeAttempts.Load(), "hedge attempts reported")
	assert.Positive(t, cancelled.Load(), "losers reported")
	t.Logf("%d requests: %d hits, %d hedges at the server, %d hedge attempts, %d losers", requests, hits.Load(), hedgesIn.Load(), hedgeAttempts.Load(), cancelled.Load())
}

// Only what may be sent twice is hedged: a POST without an idempotency key
// is not, nor is a body that cannot be produced again (opaque, over
// WithMaxBufferedBody). A POST with an Idempotency-Key, and an opaque body
// within the limit, are: they show that the same server would have seen a
// hedge.
func TestHedgeLoopbackOnlyReplayableIdempotent(t *testing.T) {
	const limit = 1 << 10
	for _, tc := range []struct {
		name   string
		method string
		key    bool
		size   int
		opaque bool
		length bool // an opaque body with its ContentLength set
		hedged bool
	}{
		{name: "POST without key", method: http.MethodPost, size: 100},
		{name: "POST with Idempotency-Key", method: http.MethodPost, key: true, size: 100, hedged: true},
		{name: "PUT opaque body over the limit", method: http.MethodPut, size: limit + 1, opaque: true},
		{name: "PUT opaque body over the limit, length known", method: http.MethodPut, size: limit + 1, opaque: true, length: true},
		{name: "PUT opaque body within the limit", method: http.MethodPut, size: limit, opaque: true, hedged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newHLRig(t)
			firstIn, hedgeIn := newHLSignal(), newHLSignal()
			var hits, mismatches atomic.Int32
			var firstEnded atomic.Bool
			g.start(t, false, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				n := r.Header.Get(hlAttempt)
				body, err := io.ReadAll(r.Body)
				if err == nil && hlHash(body) != r.Header.Get(hlSum) {
					mismatches.Add(1)
				}
				if n == "1" {
					firstIn.fire()
					if tc.hedged {
						// Hang: only a hedge can answer.
						if g.wait(r, nil, hlHangCap) == hlCtxEnded {
							firstEnded.Store(true)
						}
						return
					}
					// Leave a hedge ample time to show up, then answer.
					if g.wait(r, hedgeIn.ch, 100*time.Millisecond) == hlCtxEnded {
						return
					}
				} else {
					hedgeIn.fire()
					g.wait(r, firstIn.ch, hlHangCap)
				}
				w.Header().Set(hlServed, n)
				_, _ = io.WriteString(w, hlHash(body))
			}, WithHedge(&Hedge{Delay: 2 * time.Millisecond}), WithMaxBufferedBody(limit))

			payload := hlPayload(uint64(tc.size), tc.size)
			var body io.Reader = strings.NewReader(string(payload)) // GetBody
			if tc.opaque {
				body = io.NopCloser(bytes.NewReader(payload))
			}
			req := newReq(t, tc.method, g.srv.URL, body)
			require.Equal(t, tc.opaque, req.GetBody == nil)
			if tc.length {
				req.ContentLength = int64(len(payload))
			}
			if tc.key {
				req.Header.Set("Idempotency-Key", "k-1")
			}
			req.Header.Set(hlSum, hlHash(payload))
			start := time.Now()
			resp, err := g.tr.RoundTrip(req)
			elapsed := time.Since(start)
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, hlHash(payload), string(got), "the server got the whole body")
			assert.Zero(t, mismatches.Load(), "attempts whose body the server got wrong")
			if tc.hedged {
				assert.Equal(t, "2", resp.Header.Get(hlServed), "the hedge's response")
				assert.EqualValues(t, 2, g.track.calls.Load(), "attempt 1 and one hedge")
				assert.EqualValues(t, 2, hits.Load(), "the server saw attempt 1 and the hedge")
				assert.Less(t, elapsed, hlQuick, "RoundTrip waited for the hanging attempt 1")
				assert.Eventually(t, firstEnded.Load, time.Second, 5*time.Millisecond, "the server saw attempt 1's context end")
				return
			}
			assert.Equal(t, "1", resp.Header.Get(hlServed))
			assert.EqualValues(t, 1, g.track.calls.Load(), "one attempt, no hedge")
			assert.EqualValues(t, 1, hits.Load(), "the server saw one attempt")
			assert.False(t, hedgeIn.fired(), "a hedge reached the server")
		})
	}
}
