package retry

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

var errShutdown = errors.New("service shutting down")

// stopPoint is where in a call the caller's context ends.
type stopPoint int

const (
	beforeFirst stopPoint = iota
	duringAttempt
	duringWait
)

func (p stopPoint) String() string {
	return [...]string{"before the first attempt", "during an attempt", "during a wait"}[p]
}

// Whenever the loop stops because the context ended with a cause, the error
// matches both the cause and context.Canceled.
func TestCancelCause(t *testing.T) {
	for _, at := range []stopPoint{beforeFirst, duringAttempt, duringWait} {
		// fn fails at once on attempt 1; on later attempts it blocks until
		// the context ends. cancelAt decides when the test cancels.
		callers := map[string]func(ctx context.Context, fn func(context.Context) (int, error)) error{
			"Do": func(ctx context.Context, fn func(context.Context) (int, error)) error {
				_, err := Do(ctx, fn, fast...)
				return err
			},
			"DoErr": func(ctx context.Context, fn func(context.Context) (int, error)) error {
				return DoErr(ctx, func(ctx context.Context) error { _, err := fn(ctx); return err }, fast...)
			},
			"Wrap": func(ctx context.Context, fn func(context.Context) (int, error)) error {
				_, err := Wrap(fn, fast...)(ctx)
				return err
			},
			"RoundTrip": func(ctx context.Context, fn func(context.Context) (int, error)) error {
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if _, err := fn(r.Context()); err != nil {
						return nil, err
					}
					return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
				})
				resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
				assert.Nil(t, resp)
				return err
			},
		}
		for name, call := range callers {
			t.Run(name+" "+at.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					ctx, cancel := context.WithCancelCause(t.Context())
					calls := 0
					fn := func(ctx context.Context) (int, error) {
						calls++
						if at == duringAttempt {
							cancel(errShutdown)
							<-ctx.Done()
							return 0, ctx.Err()
						}
						return 0, syscall.ECONNRESET // retried by Do and by a Transport
					}
					switch at {
					case beforeFirst:
						cancel(errShutdown)
					case duringWait:
						time.AfterFunc(500*time.Millisecond, func() { cancel(errShutdown) })
					}
					err := call(ctx, fn)
					require.Error(t, err)
					assert.ErrorIs(t, err, errShutdown, "the cause")
					assert.ErrorIs(t, err, context.Canceled)
					switch at {
					case beforeFirst:
						assert.Zero(t, calls)
					case duringAttempt, duringWait:
						assert.Equal(t, 1, calls)
						var re *Error
						require.ErrorAs(t, err, &re)
						assert.Equal(t, 1, re.Attempts)
					}
				})
			})
		}
	}
}

// A deadline cause is reached too, next to context.DeadlineExceeded.
func TestDeadlineCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeoutCause(t.Context(), 1500*time.Millisecond, errShutdown)
		defer cancel()
		_, err := Do(ctx, func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, fast...)
		assert.ErrorIs(t, err, errShutdown)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

// Through a real http.Client and a server that hangs, a cancel cause
// reaches the caller.
func TestCancelCauseThroughClient(t *testing.T) {
	srv := h.NewServer(t, h.Hang())
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(50*time.Millisecond, func() { cancel(errShutdown) })
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	require.NoError(t, err)
	resp, err := NewClient(quick...).Do(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, errShutdown)
	assert.ErrorIs(t, err, context.Canceled)
}

// Bug: the error at a deadline depended on where the deadline fell. Under
// one rule: the last response when the loop holds one, else *Error with
// the attempts, the last failure and the deadline as cause.
func TestDeadlineRuleIsOneRule(t *testing.T) {
	// Attempts take 100ms and answer 503; waits are 100ms: attempt 1 runs
	// over [0, 100ms], the wait [100, 200], attempt 2 [200, 300], ...
	cases := []struct {
		name     string
		deadline time.Duration
		// wantResp: the last 503 comes back; else *Error.
		wantResp bool
		attempts int
	}{
		{"the next wait would pass it", 150 * time.Millisecond, true, 1},
		{"the next wait would end on it", 200 * time.Millisecond, true, 1},
		{"during attempt 2", 250 * time.Millisecond, false, 2},
		{"during attempt 4", 650 * time.Millisecond, false, 4},
		{"the wait after attempt 3 would pass it", 550 * time.Millisecond, true, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 20 { // the old code's answer varied from run to run
				synctest.Test(t, func(t *testing.T) {
					calls := 0
					base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
						calls++
						select {
						case <-time.After(100 * time.Millisecond):
						case <-r.Context().Done():
							return nil, r.Context().Err()
						}
						return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: http.NoBody}, nil
					})
					ctx, cancel := context.WithTimeout(t.Context(), c.deadline)
					defer cancel()
					tr := NewTransport(base, WithMaxAttempts(20), WithBudget(nil), WithSleepTime(100*time.Millisecond), WithBackoff(1), discard)
					resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
					assert.Equal(t, c.attempts, calls)
					if c.wantResp {
						require.NoError(t, err)
						require.NotNil(t, resp)
						assert.Equal(t, 503, resp.StatusCode)
						return
					}
					assert.Nil(t, resp)
					var re *Error
					require.ErrorAs(t, err, &re)
					assert.Equal(t, c.attempts, re.Attempts)
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					assert.Contains(t, re.Err.Error(), "503", "the last failure is kept")
					assert.Equal(t, ServerError, re.Category)
				})
			}
		})
	}
}

// Do follows the same rule: the deadline during an attempt gives *Error
// with the attempts and the last failure.
func TestDoDeadlineDuringAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		calls := 0
		_, err := Do(ctx, func(ctx context.Context) (int, error) {
			calls++
			select {
			case <-time.After(100 * time.Millisecond):
				return 0, errFlaky
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, WithMaxAttempts(20), WithSleepTime(100*time.Millisecond), WithBackoff(1), discard)
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 2, re.Attempts)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errFlaky, "the last failure is kept")
	})
}
