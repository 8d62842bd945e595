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

// WithOnRetryContext's hook gets the call's context with each retry.
func TestOnRetryContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		base := &fakeBase{script: []reply{respond(503), respond(200)}}
		var got []any
		tr := NewTransport(base, discard, WithSleepTime(time.Millisecond),
			WithOnRetryContext(func(ctx context.Context, e Event) { got = append(got, ctx.Value(key{}), e.Attempt) }))
		req := newReq(t, "GET", "http://svc/x", nil)
		req = req.WithContext(context.WithValue(req.Context(), key{}, "caller"))
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, []any{"caller", 1}, got)
		assert.ErrorIs(t, CheckOptions(WithOnRetryContext(nil)), ErrInvalidOption)
	})
}
