package retry

import (
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedCooldowns is a SharedCooldown that stands for a fleet's store: what
// one Transport holds off, every Transport using it learns at once.
type sharedCooldowns struct {
	Budget
	mu    sync.Mutex
	until map[string]time.Time
	holds []string // the hosts of the HoldOff calls
	asked int      // CoolingUntil calls
}

func (s *sharedCooldowns) HoldOff(host string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	if until.After(s.until[host]) {
		s.until[host] = until
	}
	s.holds = append(s.holds, host)
}

func (s *sharedCooldowns) CoolingUntil(host string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	return s.until[host]
}

var _ SharedCooldown = (*sharedCooldowns)(nil)

// A Retry-After seen by one Transport holds off another that shares the
// budget: its new requests wait for the end, then go.
func TestSharedCooldownHoldsOffOtherTransports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shared := &sharedCooldowns{}
		srv := newThrottlingServer(time.Second, 0) // 429 + Retry-After: 1 for 1s
		a := NewTransport(srv, WithBudget(shared), WithMaxAttempts(1), discard)
		b := NewTransport(srv, WithBudget(shared), WithMaxAttempts(1), discard)

		start := time.Now()
		resp, err := a.RoundTrip(newReq(t, "GET", "http://api.example:8080/x?secret=1", nil))
		require.NoError(t, err)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		shared.mu.Lock()
		assert.Equal(t, []string{"api.example:8080"}, shared.holds, "the host only, no path or query")
		assert.Equal(t, start.Add(time.Second), shared.until["api.example:8080"], "the end is the Retry-After from the answer")
		shared.mu.Unlock()

		resp, err = b.RoundTrip(newReq(t, "GET", "http://api.example:8080/y", nil))
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "sent after the cooldown, when the server is back")
		waited := time.Since(start)
		assert.GreaterOrEqual(t, waited, time.Second, "the other Transport waited for the cooldown it learned")
		assert.LessOrEqual(t, waited, time.Second+100*time.Millisecond, "plus at most a tenth of it in jitter")
		assert.Equal(t, 2, srv.hitsBetween(0, time.Hour), "nothing went to the host during the cooldown")

		// Another host is not held off.
		start = time.Now()
		_, err = b.RoundTrip(newReq(t, "GET", "http://other.example/", nil))
		require.NoError(t, err)
		assert.Zero(t, time.Since(start))
	})
}

// When the shared cooldown ends, one request of a Transport probes the host
// and the others wait probeWindow more, as for a cooldown of its own; an
// end already past holds nothing off.
func TestSharedCooldownProbeAndPastEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shared := &sharedCooldowns{}
		srv := newThrottlingServer(0, 10*time.Millisecond) // always 200
		tr := NewTransport(srv, WithBudget(shared), discard, WithJitter(NoJitter))
		shared.HoldOff("api.example", time.Now().Add(-time.Second))
		start := time.Now()
		_, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
		require.NoError(t, err)
		assert.Equal(t, 10*time.Millisecond, time.Since(start), "an end already past holds nothing off")

		shared.HoldOff("api.example", time.Now().Add(500*time.Millisecond))
		start = time.Now()
		var mu sync.Mutex
		var sent []time.Duration
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				_, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
				assert.NoError(t, err)
				mu.Lock()
				sent = append(sent, time.Since(start)-10*time.Millisecond)
				mu.Unlock()
			})
		}
		wg.Wait()
		first := min(sent[0], sent[1], sent[2])
		assert.GreaterOrEqual(t, first, 500*time.Millisecond, "nobody goes before the end")
		for _, s := range sent {
			if s != first {
				assert.GreaterOrEqual(t, s, first+10*time.Millisecond, "the others wait for the probe's answer (its latency is 10ms)")
			}
		}
	})
}

// WithHostCooldown(false) neither tells nor asks a shared budget.
func TestSharedCooldownOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shared := &sharedCooldowns{}
		shared.HoldOff("api.example", time.Now().Add(time.Hour))
		shared.holds = nil
		srv := newThrottlingServer(time.Second, 0)
		tr := NewTransport(srv, WithBudget(shared), WithMaxAttempts(1), WithHostCooldown(false), discard)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://api.example/", nil))
		require.NoError(t, err)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Empty(t, shared.holds)
		assert.Zero(t, shared.asked)
	})
}
