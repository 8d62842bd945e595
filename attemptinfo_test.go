package retry

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A RoundTripper below a Transport learns each attempt's number, and
// whether it is a hedge, from the request's context.
func TestAttemptFrom(t *testing.T) {
	assert.Equal(t, AttemptInfo{Number: 1}, AttemptFrom(context.Background()))
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []AttemptInfo
		calls := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			calls++
			i := calls
			seen = append(seen, AttemptFrom(r.Context()))
			mu.Unlock()
			code := 503
			if i == 3 {
				code = 200
			}
			return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		})
		tr := NewTransport(base, discard, WithSleepTime(time.Millisecond))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, []AttemptInfo{{1, false}, {2, false}, {3, false}}, seen)

		// A hedge is marked.
		seen = nil
		hb := &timedBase{plan: slowFirst(time.Second, time.Millisecond, 200)}
		var infos []AttemptInfo
		wrapped := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			infos = append(infos, AttemptFrom(r.Context()))
			mu.Unlock()
			return hb.RoundTrip(r)
		})
		tr = NewTransport(wrapped, discard, WithHedge(&Hedge{Delay: 10 * time.Millisecond}))
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, []AttemptInfo{{1, false}, {2, true}}, infos)
	})
}
