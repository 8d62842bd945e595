package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errFlaky = errors.New("flaky")

// discard keeps the always-on ERROR footprint out of test output.
var discard = WithLogger(slog.New(slog.DiscardHandler))

// recorder is an fn that fails the first `failures` calls with errFlaky
// and records when each call happened.
type recorder struct {
	failures int
	calls    []time.Time
}

func (r *recorder) fn(context.Context) (int, error) {
	r.calls = append(r.calls, time.Now())
	if len(r.calls) <= r.failures {
		return 0, fmt.Errorf("call %d: %w", len(r.calls), errFlaky)
	}
	return len(r.calls), nil
}

// gaps returns the waits between consecutive calls.
func (r *recorder) gaps() []time.Duration {
	var out []time.Duration
	for i := 1; i < len(r.calls); i++ {
		out = append(out, r.calls[i].Sub(r.calls[i-1]))
	}
	return out
}

func TestDoDefaultSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{failures: 100}
		_, err := Do(t.Context(), r.fn, discard)
		require.Error(t, err)
		assert.Equal(t, []time.Duration{2 * time.Second, 4 * time.Second}, r.gaps())

		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts)
		assert.Nil(t, re.Cause)
		assert.ErrorIs(t, err, errFlaky, "the last error stays reachable")
		assert.Equal(t, "retry: giving up after 3 attempts: call 3: flaky", err.Error())
	})
}

func TestDoSeedExampleSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{failures: 100}
		_, err := Do(t.Context(), r.fn, discard, WithMaxAttempts(4), WithSleepTime(time.Second), WithBackoff(1.5))
		require.Error(t, err)
		assert.Equal(t, []time.Duration{time.Second, 1500 * time.Millisecond, 2250 * time.Millisecond}, r.gaps())
	})
}

func TestDoMaxDelayCapsEachWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{failures: 100}
		_, _ = Do(t.Context(), r.fn, discard, WithMaxAttempts(5), WithSleepTime(time.Second), WithMaxDelay(3*time.Second))
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}, r.gaps())
	})
}

func TestDoSucceedsAfterFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{failures: 2}
		v, err := Do(t.Context(), r.fn, discard)
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		assert.Len(t, r.calls, 3)
	})
}

func TestDoFirstAttemptIsImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		r := &recorder{}
		_, err := Do(t.Context(), r.fn)
		require.NoError(t, err)
		assert.Equal(t, start, r.calls[0])
	})
}

func TestDoPermanent(t *testing.T) {
	root := errors.New("bad request")
	calls := 0
	_, err := Do(t.Context(), func(context.Context) (int, error) {
		calls++
		return 0, Permanent(root)
	})
	assert.Equal(t, 1, calls)
	assert.Same(t, root, err, "Permanent(err) returns err itself")

	calls = 0
	wrapped := fmt.Errorf("loading: %w", Permanent(root))
	_, err = Do(t.Context(), func(context.Context) (int, error) {
		calls++
		return 0, wrapped
	})
	assert.Equal(t, 1, calls)
	assert.Equal(t, wrapped, err, "a wrapped Permanent stops too and keeps its context")
	assert.NoError(t, Permanent(nil))
}

func TestDoRetryOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := errors.New("invalid result")
		calls := 0
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 0, other
		}, WithRetryOn(errFlaky, io.EOF))
		assert.Same(t, other, err, "a non-matching error is returned at once and unchanged")
		assert.Equal(t, 1, calls)

		r := &recorder{failures: 1}
		v, err := Do(t.Context(), r.fn, WithRetryOn(io.EOF, errFlaky))
		require.NoError(t, err)
		assert.Equal(t, 2, v, "a matching (wrapped) error is retried")
	})
}

func TestDoRetryIf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		isPathErr := func(err error) bool {
			var pe *os.PathError
			return errors.As(err, &pe)
		}
		calls := 0
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 0, &os.PathError{Op: "open", Path: "x", Err: os.ErrNotExist}
		}, discard, WithRetryIf(isPathErr))
		assert.Equal(t, 3, calls)
		assert.ErrorIs(t, err, os.ErrNotExist)

		calls = 0
		_, err = Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 0, errFlaky
		}, WithRetryIf(isPathErr))
		assert.Equal(t, 1, calls)
		assert.Same(t, errFlaky, err)

		// WithRetryOn and WithRetryIf together: either may accept.
		calls = 0
		_, _ = Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 0, errFlaky
		}, discard, WithRetryIf(isPathErr), WithRetryOn(errFlaky))
		assert.Equal(t, 3, calls)
	})
}

func TestDoContextCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	_, err := Do(ctx, func(context.Context) (int, error) { called = true; return 1, nil })
	assert.False(t, called)
	assert.Same(t, context.Canceled, err)
}

func TestDoCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel) // in the middle of the 2s wait
		start := time.Now()
		r := &recorder{failures: 100}
		_, err := Do(ctx, r.fn, discard)
		assert.Equal(t, time.Second, time.Since(start), "returns as soon as the context ends")
		assert.Len(t, r.calls, 1)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, errFlaky, "the last attempt's error stays reachable")
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 1, re.Attempts)
	})
}

func TestDoCancelDuringAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		_, err := Do(ctx, func(ctx context.Context) (int, error) {
			calls++
			cancel()
			return 0, errFlaky
		}, discard)
		assert.Equal(t, 1, calls, "no retry once the caller's context is done")
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestDoDeadlineRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		r := &recorder{failures: 100}
		_, err := Do(ctx, r.fn, discard)
		// Attempt 1 at 0s, wait 2s, attempt 2 at 2s; the next wait (4s)
		// would end after the deadline (3s), so Do returns at 2s.
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Len(t, r.calls, 2)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errFlaky)
		assert.NoError(t, ctx.Err(), "returned before the deadline, not at it")
	})
}

func TestDoInvalidOptions(t *testing.T) {
	tests := []struct {
		opt  Option
		want string
	}{
		{WithMaxAttempts(0), "WithMaxAttempts(0)"},
		{WithMaxAttempts(-3), "WithMaxAttempts(-3)"},
		{WithSleepTime(-time.Second), "WithSleepTime(-1s)"},
		{WithBackoff(0.5), "WithBackoff(0.5)"},
		{WithBackoff(nanFloat()), "WithBackoff(NaN)"},
		{WithBackoff(infFloat()), "WithBackoff(+Inf)"},
		{WithMaxDelay(0), "WithMaxDelay(0s)"},
		{WithMaxDelay(-time.Second), "WithMaxDelay(-1s)"},
		{WithJitter(Jitter(7)), "WithJitter(Jitter(7))"},
		{WithRetryOn(), "WithRetryOn()"},
		{WithRetryOn(io.EOF, nil), "target 1 is nil"},
		{WithRetryIf(nil), "WithRetryIf(nil)"},
		{WithOnRetry(nil), "WithOnRetry(nil)"},
		{nil, "nil Option"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			called := false
			fn := func(context.Context) (int, error) { called = true; return 1, nil }
			_, err := Do(t.Context(), fn, tt.opt)
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.want)
			assert.False(t, called, "fn must not run with invalid options")

			_, err = Wrap(fn, tt.opt)(t.Context())
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.False(t, called)
		})
	}
}

func nanFloat() float64 { var z float64; return z / z }
func infFloat() float64 { var z float64; return 1 / z }

func TestOnRetryEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []Event
		r := &recorder{failures: 100}
		_, _ = Do(t.Context(), r.fn, discard, WithName("fetch"), WithOnRetry(func(e Event) { events = append(events, e) }))
		require.Len(t, events, 2, "one event before each wait, none when giving up")
		for i, e := range events {
			assert.Equal(t, "fetch", e.Name)
			assert.Equal(t, i+1, e.Attempt)
			assert.Equal(t, 3, e.MaxAttempts)
			assert.ErrorIs(t, e.Err, errFlaky)
		}
		assert.Equal(t, 2*time.Second, events[0].Delay)
		assert.Equal(t, 4*time.Second, events[1].Delay)
	})
}

func TestJitterAppliedByDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var delays []time.Duration
		hook := WithOnRetry(func(e Event) { delays = append(delays, e.Delay) })
		for range 20 {
			r := &recorder{failures: 100}
			_, _ = Do(t.Context(), r.fn, discard, hook, WithJitter(FullJitter), WithMaxAttempts(4))
			assert.Equal(t, delays[len(delays)-3:], r.gaps(), "the loop waits what the event says")
		}
		distinct := map[time.Duration]bool{}
		for i, d := range delays {
			limit := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}[i%3]
			assert.LessOrEqual(t, d, limit)
			distinct[d] = true
		}
		assert.Greater(t, len(distinct), 10, "full jitter varies the waits")
	})
}

func TestDefaultNameIsFunctionName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var name string
		_, _ = Do(t.Context(), namedFailure, discard, WithOnRetry(func(e Event) { name = e.Name }))
		assert.Equal(t, "retry.namedFailure", name)

		_, _ = Wrap(namedFailure, discard, WithOnRetry(func(e Event) { name = e.Name }))(t.Context())
		assert.Equal(t, "retry.namedFailure", name)

		_ = DoErr(t.Context(), namedErrFailure, discard, WithOnRetry(func(e Event) { name = e.Name }))
		assert.Equal(t, "retry.namedErrFailure", name, "DoErr names the caller's function, not its adapter")
	})
}

func namedErrFailure(context.Context) error { return errFlaky }

func namedFailure(context.Context) (int, error) { return 0, errFlaky }

func TestDoErr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := DoErr(t.Context(), func(context.Context) error {
			calls++
			if calls < 2 {
				return errFlaky
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 2, calls)

		err = DoErr(t.Context(), func(context.Context) error { return errFlaky }, discard, WithMaxAttempts(2))
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestWrapConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var total atomic.Int64
		var hooks atomic.Int64
		// Each call fails its first attempt and succeeds on the second: a
		// counter per call, carried by the call's context (a counter shared
		// by all calls let one call fail ten times in a row now and then).
		type attemptsKey struct{}
		fetch := Wrap(func(ctx context.Context) (int, error) {
			total.Add(1)
			if ctx.Value(attemptsKey{}).(*atomic.Int32).Add(1) == 1 {
				return 0, errFlaky
			}
			return 7, nil
		}, WithSleepTime(time.Millisecond), WithJitter(DecorrelatedJitter), WithMaxAttempts(10),
			WithOnRetry(func(Event) { hooks.Add(1) }), discard)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range 20 {
					v, err := fetch(context.WithValue(t.Context(), attemptsKey{}, new(atomic.Int32)))
					assert.NoError(t, err)
					assert.Equal(t, 7, v)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int64(64*20), hooks.Load(), "one retry per call")
		assert.Equal(t, int64(64*20), total.Load()-hooks.Load(), "every call ends in exactly one success")
	})
}

func TestDoSuccessAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = Do(ctx, fn, WithMaxAttempts(5), WithSleepTime(time.Second), WithJitter(FullJitter))
	})
	assert.Zero(t, allocs, "Do with options")
	wrapped := Wrap(fn, WithMaxAttempts(5))
	allocs = testing.AllocsPerRun(1000, func() { _, _ = wrapped(ctx) })
	assert.Zero(t, allocs, "a Wrap-ped function")
}

func BenchmarkDoSuccess(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Do(ctx, fn, WithMaxAttempts(5), WithSleepTime(time.Second))
	}
}

func BenchmarkWrapSuccess(b *testing.B) {
	ctx := context.Background()
	fn := Wrap(func(context.Context) (int, error) { return 1, nil })
	b.ReportAllocs()
	for b.Loop() {
		_, _ = fn(ctx)
	}
}

func TestCheckOptions(t *testing.T) {
	assert.NoError(t, CheckOptions(WithMaxAttempts(2), WithAttemptHeader("X-Attempt")))
	err := CheckOptions(WithSleepTime(time.Second), WithBackoff(0))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "WithBackoff(0)")
}
