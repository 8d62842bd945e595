package retry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
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

// TestChaosSoak sends requests from 64 goroutines through one Transport to
// a server that at random resets, drops, hangs, truncates, answers 503 or
// answers 200. SOAK_REQUESTS sets the requests per goroutine (default 8).
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
	base := srv.Transport().Clone()
	tr := NewTransport(base, WithMaxAttempts(4), WithSleepTime(time.Millisecond), WithMaxDelay(5*time.Millisecond),
		WithAttemptTimeout(50*time.Millisecond), WithAttemptHeader("X-Retry-Attempt"), WithBudget(nil),
		WithMetrics(m), discard)

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
				req := newReq(t, "PUT", srv.URL, body).WithContext(ctx)
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
	wg.Wait() // every call returns: each has a 5s deadline

	// Every attempt that reached the server carried the exact body.
	reqs := srv.Requests()
	attempts := map[string]bool{}
	for _, r := range reqs {
		if r.Err != nil {
			continue // the client gave up while sending (an attempt timeout)
		}
		sum := sha256.Sum256(r.Body)
		require.Equal(t, r.Header.Get("X-Body-Sha256"), hex.EncodeToString(sum[:]), "request %s", r.Header.Get("X-Req"))
		attempts[r.Header.Get("X-Req")+"#"+r.Header.Get("X-Retry-Attempt")] = true
	}
	// The metrics agree with the server: every attempt the Transport made
	// is one distinct (request, attempt) pair on the server. net/http
	// replays some requests on its own (a reused connection that died):
	// those are extra hits with a pair already seen, not extra attempts.
	counted := testutil.ToFloat64(m.requests.WithLabelValues("default", "PUT", "ok"))
	for _, o := range outcomeNames[1:] {
		counted += testutil.ToFloat64(m.requests.WithLabelValues("default", "PUT", o))
	}
	assert.Equal(t, float64(64*perGoroutine), counted, "every RoundTrip counted once")
	var attemptsTotal float64
	for c := Unknown; c <= Canceled; c++ {
		attemptsTotal += testutil.ToFloat64(m.attempts.WithLabelValues("default", "PUT", c.String()))
	}
	assert.InDelta(t, attemptsTotal, float64(len(attempts)), attemptsTotal*0.02+2,
		"attempts counted %v, distinct attempts seen by the server %d (hits %d)", attemptsTotal, len(attempts), len(reqs))
	assert.GreaterOrEqual(t, len(reqs), len(attempts))
	t.Logf("%d requests: %v attempts counted, %d distinct attempts and %d hits on the server", 64*perGoroutine, attemptsTotal, len(attempts), len(reqs))

	// Nothing leaks: connections, goroutines (goleak above), descriptors.
	tr.CloseIdleConnections()
	srv.Close()
	if fdBase >= 0 {
		deadline := time.Now().Add(2 * time.Second)
		for openFDs() > fdBase && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // closes on the server side settle asynchronously
		}
		assert.LessOrEqual(t, openFDs(), fdBase, "file descriptors back to their baseline")
	}
}
