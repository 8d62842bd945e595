package retry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	h "github.com/retrykit/retry/httptest_helpers"
)

// openFDs counts this process's open file descriptors (-1 where /proc is
// not there).
func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// attemptEnd is how the base transport's call for one attempt ended.
type attemptEnd int

const (
	// endResponse: the base returned a response. The fault server answers
	// only after it has read the whole body, so it saw this attempt whole.
	endResponse attemptEnd = iota
	// endError: an error other than a cancellation. The fault server breaks
	// a connection (Reset, Drop) only after it has read the whole body, so
	// it saw this attempt whole too.
	endError
	// endCanceled: an error after the attempt's own context ended (its
	// attempt timeout, or the caller's deadline). net/http stops wherever
	// it was: the server may have seen the attempt whole, in part, or not
	// at all.
	endCanceled
	// endCanceledByOther: a cancellation error while the attempt's own
	// context was live. net/http puts the connection of a response without
	// a body back in its pool before it hands the response over; if that
	// request is canceled in between (here, by its attempt timeout), the
	// connection is closed under the next request to take it, which gets
	// the first one's cancellation as its error (persistConn.canceledErr;
	// compare golang/go#41600). That request may never have reached the
	// server.
	endCanceledByOther
)

// attemptLog is a base RoundTripper that records, for every attempt the
// Transport sends, how the call ended, keyed by the request's X-Req and
// X-Retry-Attempt headers.
type attemptLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	ends map[string]attemptEnd
	dups []string // keys sent more than once: the Transport numbered two attempts alike
}

func (l *attemptLog) RoundTrip(r *http.Request) (*http.Response, error) {
	key := r.Header.Get("X-Req") + "#" + r.Header.Get("X-Retry-Attempt")
	resp, err := l.base.RoundTrip(r)
	end := endResponse
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		end = endCanceled
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		end = endCanceledByOther
	default:
		end = endError
	}
	l.mu.Lock()
	if _, ok := l.ends[key]; ok {
		l.dups = append(l.dups, key)
	}
	l.ends[key] = end
	l.mu.Unlock()
	return resp, err
}

func (l *attemptLog) CloseIdleConnections() {
	l.base.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

// TestChaosSoak sends requests from 64 goroutines through one Transport to
// a server that at random resets, drops, hangs, truncates, answers 503 or
// answers 200. SOAK_REQUESTS sets the requests per goroutine (default 8).
//
// Its accounting holds however loaded the machine is: on a busy machine the
// 50 ms attempt timeout cuts attempts off before the server has read them,
// so attemptLog records below the Transport how each attempt ended, and
// the test checks each attempt against the server: only those that were
// cut off by a cancellation may be missing there.
func TestChaosSoak(t *testing.T) {
	perGoroutine := 8
	if s := os.Getenv("SOAK_REQUESTS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "SOAK_REQUESTS")
		perGoroutine = n
	}
	defer goleak.VerifyNone(t)
	fdBase := openFDs()

	srv := h.Start(h.OneOf(h.Reset(), h.Drop(), h.Hang(), h.Truncate(100), h.Status(503), h.Status(200), h.Status(200)))
	m, _ := newTestMetrics(t)
	alog := &attemptLog{base: srv.Transport().Clone(), ends: map[string]attemptEnd{}}
	tr := NewTransport(alog, WithMaxAttempts(4), WithSleepTime(time.Millisecond), WithMaxDelay(5*time.Millisecond),
		WithAttemptTimeout(50*time.Millisecond), WithAttemptHeader("X-Retry-Attempt"), WithBudget(nil),
		WithMetrics(m), discard)
	// Runs before goleak's check, even when a require below stops the test,
	// so that one failure does not leak into the next run's goroutine count.
	shutdown := sync.OnceFunc(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	defer shutdown()

	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range perGoroutine {
				payload := make([]byte, rand.IntN(8<<10))
				for j := range payload {
					payload[j] = byte(rand.Uint32())
				}
				sum := sha256.Sum256(payload)
				var body io.Reader = bytes.NewReader(payload)
				if i%2 == 0 {
					body = &opaqueBody{Reader: bytes.NewReader(payload)}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req, err := http.NewRequestWithContext(ctx, "PUT", srv.URL, body)
				if err != nil {
					panic(err) // a constant URL and method: cannot happen
				}
				req.Header.Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
				req.Header.Set("X-Req", strconv.Itoa(g)+"-"+strconv.Itoa(i))
				resp, err := tr.RoundTrip(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body) // a truncated body fails here
					resp.Body.Close()
				}
				cancel()
			}
		})
	}
	// Every call returns: each has a 5 s deadline, and a goroutine makes
	// its calls one after the other, so waiting longer than that means one
	// of them hangs.
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(time.Duration(perGoroutine)*5*time.Second + 10*time.Second):
		require.FailNow(t, "RoundTrip calls did not return by their deadlines")
	}

	// The server's side: every attempt it read whole carried the exact body
	// and is one the Transport sent; one it read in part was cut off by
	// the client.
	seen := map[string]bool{} // attempts the server read whole
	var partial []string      // attempts it read in part
	reqs := srv.Requests()
	for _, r := range reqs {
		key := r.Header.Get("X-Req") + "#" + r.Header.Get("X-Retry-Attempt")
		if r.Err != nil {
			partial = append(partial, key)
			continue
		}
		sum := sha256.Sum256(r.Body)
		require.Equal(t, r.Header.Get("X-Body-Sha256"), hex.EncodeToString(sum[:]), "attempt %s", key)
		seen[key] = true
	}
	ends := alog.ends
	require.Empty(t, alog.dups, "the Transport numbered two attempts of one request alike")
	for key := range seen {
		_, sent := ends[key]
		require.True(t, sent, "the server saw attempt %s, which the Transport never sent", key)
	}
	for _, key := range partial {
		// net/http replays an idempotent request when a reused connection
		// breaks; a replay of an attempt read in part would also be read whole.
		require.True(t, ends[key] >= endCanceled || seen[key],
			"the server read attempt %s in part, but the client did not cut it off", key)
	}
	var answered, broken, cutOff, cutOffUnseen, byOther int
	for key, end := range ends {
		switch end {
		case endResponse:
			answered++
		case endError:
			broken++
		case endCanceled, endCanceledByOther:
			cutOff++
			if end == endCanceledByOther {
				byOther++
			}
			if !seen[key] {
				cutOffUnseen++
			}
			continue
		}
		require.True(t, seen[key], "attempt %s got an answer or a broken connection, but the server never read it whole", key)
	}

	// The metrics agree: every RoundTrip counted once, every attempt sent
	// counted once. A cut-off attempt is counted as timeout or canceled, so
	// every attempt counted otherwise is one the server read whole; the
	// server read at most the attempts counted.
	counted := testutil.ToFloat64(m.requests.WithLabelValues("default", "PUT", "ok"))
	for _, o := range outcomeNames[1:] {
		counted += testutil.ToFloat64(m.requests.WithLabelValues("default", "PUT", o))
	}
	assert.Equal(t, float64(64*perGoroutine), counted, "every RoundTrip counted once")
	var attemptsTotal, cutOffCounted float64
	for c := Unknown; c <= Canceled; c++ {
		n := testutil.ToFloat64(m.attempts.WithLabelValues("default", "PUT", c.String()))
		attemptsTotal += n
		if c == Timeout || c == Canceled {
			cutOffCounted += n
		}
	}
	assert.Equal(t, float64(len(ends)), attemptsTotal, "every attempt sent counted once")
	assert.LessOrEqual(t, attemptsTotal-cutOffCounted, float64(len(seen)),
		"attempts counted as neither timeout nor canceled must all be on the server")
	assert.LessOrEqual(t, float64(len(seen)), attemptsTotal, "the server saw no attempt that was not counted")
	// The chaos happened: answers, broken connections and cut-off attempts.
	assert.Positive(t, answered, "attempts answered")
	assert.Positive(t, broken, "attempts on a broken connection")
	assert.Positive(t, cutOff, "attempts cut off")
	t.Logf("%d requests, %v attempts: %d answered, %d on a broken connection, %d cut off (%d by another request's cancellation; %d never read whole by the server); server: %d hits (net/http replays some), %d attempts read whole, %d in part",
		64*perGoroutine, attemptsTotal, answered, broken, cutOff, byOther, cutOffUnseen, len(reqs), len(seen), len(partial))

	// Nothing leaks: connections, goroutines (goleak above), descriptors.
	shutdown()
	if fdBase >= 0 {
		deadline := time.Now().Add(2 * time.Second)
		for openFDs() > fdBase && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // closes on the server side settle asynchronously
		}
		assert.LessOrEqual(t, openFDs(), fdBase, "file descriptors back to their baseline")
	}
}
