package retry

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"time"
)

// Do calls fn until it succeeds, returns an error that is not retried, or
// the attempts run out, waiting between attempts under the exponential
// schedule of the options (by default 3 attempts, waits of 2s and 4s). It
// ports the Python module's retry and retry_async: to retry in the
// background, call Do in a goroutine.
//
// Do returns fn's result on success. Otherwise:
//   - an invalid option: an error wrapping ErrInvalidOption; fn is not called;
//   - ctx already done: ctx.Err() (an error that also matches
//     context.Cause(ctx) when the context has a cause of its own); fn is not
//     called;
//   - ctx ended while fn ran and fn returned an error, or ctx ended during
//     a wait: an *Error whose Cause matches both ctx.Err() and
//     context.Cause(ctx), with the attempts made and the last failure;
//   - fn returned Permanent(err): err itself;
//   - an error that WithRetryOn/WithRetryIf do not accept: that error, unchanged;
//   - attempts exhausted, the next wait would pass ctx's deadline, or fn
//     asked with RetryAfter for a wait longer than the max delay: an *Error
//     wrapping the last error (and, at the deadline, DeadlineExceeded).
//
// fn receives ctx unchanged. Do sleeps only between attempts and returns as
// soon as ctx is done. Options carried by ctx (WithRequestOptions) apply
// on top of opts.
func Do[T any](ctx context.Context, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	c := newConfig(opts)
	if ropts := requestOptions(ctx); ropts != nil {
		c.applyRequestOptions(ropts)
	}
	return doWith(ctx, &c, fn, fn)
}

// DoErr is Do for functions that return only an error.
func DoErr(ctx context.Context, fn func(context.Context) error, opts ...Option) error {
	c := newConfig(opts)
	if ropts := requestOptions(ctx); ropts != nil {
		c.applyRequestOptions(ropts)
	}
	_, err := doWith(ctx, &c, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, fn)
	return err
}

// Wrap returns fn with retries built in: each call of the result behaves as
// Do(ctx, fn, opts...). It ports the Python module's retry_wrapper. The
// options are checked once, here; if one is invalid, every call returns
// that error without calling fn. The result is safe for concurrent use.
func Wrap[T any](fn func(context.Context) (T, error), opts ...Option) func(context.Context) (T, error) {
	c := newConfig(opts)
	if c.name == "" {
		c.name = funcName(fn)
	}
	return func(ctx context.Context) (T, error) {
		if ropts := requestOptions(ctx); ropts != nil {
			rc := c
			rc.applyRequestOptions(ropts)
			return doWith(ctx, &rc, fn, fn)
		}
		return doWith(ctx, &c, fn, fn)
	}
}

// doWith runs fn under c; named is the function whose name footprints show
// when WithName was not given (fn itself, or the caller's function that fn
// adapts).
func doWith[T any](ctx context.Context, c *config, fn func(context.Context) (T, error), named any) (T, error) {
	return run(ctx, c, "retry.Do", hooks[T]{
		attempt: fn,
		judge: func(_ T, err error) verdict {
			if err == nil {
				return verdict{stop: true}
			}
			if e, ok := unpermanent(err); ok {
				return verdict{stop: true, err: e, outcome: outcomeNotRetryable}
			}
			if !c.retryable(err) {
				return verdict{stop: true, err: err, outcome: outcomeNotRetryable}
			}
			return verdict{err: err}
		},
		name:     func() string { return funcName(named) },
		describe: describeFuncError[T],
	})
}

// describeFuncError adds to the event of fn's failed attempt the wait that
// fn asked for with RetryAfter, if any.
func describeFuncError[T any](ev *Event, _ T) {
	var ra *retryAfterError
	if errors.As(ev.Err, &ra) {
		ev.RetryAfter = ra.d
	}
}

// funcName returns fn's name as the runtime knows it, without the import
// path: "main.fetchUser", "retry_test.ExampleDo.func1".
func funcName(fn any) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return "function"
	}
	name := f.Name()
	name = name[strings.LastIndexByte(name, '/')+1:]
	return strings.TrimSuffix(name, "-fm")
}

// verdict is what a judge decides about one attempt's result. It is kept
// to 32 bytes: it is returned by value on every attempt, and a larger copy
// costs more than the rest of a successful call. What only a retry needs
// (the response, Retry-After) comes from hooks.describe instead.
type verdict struct {
	// err describes the failure: the error to return when stop is set, and
	// the attempt's error for events and *Error otherwise.
	err error
	// category is the attempt's classification (Unknown for Do).
	category Category
	// stop means: return this result as it is (success, or a failure that
	// is not retried). The loop returns the attempt's value and err.
	stop bool
	// outcome is how the call ends when stop is set.
	outcome outcome
	// byContext means: the attempt failed because the caller's context
	// ended; the loop stops on it by the context rule.
	byContext bool
}

// hooks adapt the loop to what is being retried: a function (Do) or an HTTP
// request (Transport).
//
// The controller (named in footprints) is a parameter of run rather than a
// field here: escape analysis treats a struct as a whole, and a string that
// reaches the logger would send the closures to the heap with it.
type hooks[T any] struct {
	// attempt runs one attempt.
	attempt func(context.Context) (T, error)
	// judge classifies an attempt's result.
	judge func(T, error) verdict
	// release frees a result that will not be returned (nil: nothing to do).
	release func(T)
	// name is the operation's name when WithName was not given.
	name func() string
	// describe fills in the event of a failed attempt from its result: the
	// request's method and URL, the response and its Retry-After (nil:
	// nothing to add; the loop sets RetryAfter to -1 before).
	describe func(*Event, T)
	// method is the request's method, for metric labels ("" for Do).
	method string
}

// run is the retry loop: the one place that decides whether to retry and
// the one place that waits. The first attempt is run here and everything
// after a failure in retrying, which keeps the success path short.
func run[T any](ctx context.Context, c *config, controller string, h hooks[T]) (T, error) {
	if c.err != nil {
		var zero T
		return zero, c.err
	}
	if err := ctx.Err(); err != nil {
		c.metrics.request(h.method, outcomeOfContext(err))
		var zero T
		return zero, contextError(ctx)
	}
	if c.budget != nil {
		c.budget.started(time.Now)
	}
	v, vd, err := attemptOnce(ctx, c, &h)
	if !vd.stop {
		v, vd.outcome, vd.err = retrying(ctx, c, controller, &h, v, err, vd)
	} else if vd.category.Retryable() {
		notRetried(ctx, c, controller, &h, 1, v, vd)
	}
	// Every call ends with exactly one outcome, counted here.
	c.metrics.request(h.method, vd.outcome)
	return v, vd.err
}

// attemptOnce runs one attempt, judges it and counts it. An error that
// comes back once the caller's context has ended is the context's doing,
// whatever its text: the loop stops on it by the context rule.
func attemptOnce[T any](ctx context.Context, c *config, h *hooks[T]) (T, verdict, error) {
	v, err := h.attempt(ctx)
	var vd verdict
	if err != nil && ctx.Err() != nil {
		vd = verdict{err: err, category: Canceled, byContext: true}
	} else {
		vd = h.judge(v, err)
	}
	c.metrics.attempt(h.method, vd.category)
	return v, vd, err
}

// retrying carries on after attempt 1 failed with v, err and its verdict
// vd, and returns the call's result, outcome and error.
func retrying[T any](ctx context.Context, c *config, controller string, h *hooks[T], v T, err error, vd verdict) (T, outcome, error) {
	var zero T
	var prev time.Duration // the last wait, for decorrelated jitter
	var last verdict       // the last failure that was not the context's doing
	for n := 1; ; n++ {
		if n > 1 {
			// Run the next attempt and judge its result.
			if v, vd, err = attemptOnce(ctx, c, h); vd.stop {
				if vd.category.Retryable() {
					notRetried(ctx, c, controller, h, n, v, vd)
				}
				return v, vd.outcome, vd.err
			}
		}
		// An attempt cut short by the context is reported with the failure
		// before it, which says more than "context canceled".
		if !vd.byContext || last.err == nil {
			last = vd
		}
		ev := Event{Name: c.name, Attempt: n, MaxAttempts: c.maxAttempts, Err: last.err, Category: last.category, RetryAfter: -1}
		if ev.Name == "" {
			ev.Name = h.name()
		}
		if h.describe != nil {
			h.describe(&ev, v)
		}
		fail := &Error{Attempts: n, Err: last.err, Category: last.category}
		// The caller's context ended: stop without a footprint. At a
		// deadline the response in hand, if any, is the answer; a cancel
		// closes it.
		if cerr := ctx.Err(); cerr != nil {
			fail.Cause = contextError(ctx)
			if err == nil && cerr == context.Canceled && h.release != nil {
				h.release(v)
				return zero, outcomeCanceled, fail
			}
			v, err := giveUp(v, err, fail)
			return v, outcomeOfContext(cerr), err
		}
		// The attempts ran out.
		if n >= c.maxAttempts {
			c.footprint(ctx, footprintGiveUp, controller, &ev)
			v, err := giveUp(v, err, fail)
			return v, outcomeExhausted, err
		}
		// Compute the wait: the schedule's, or longer if the server (or fn,
		// with RetryAfter) asks. One that asks for more than the max delay
		// gets its answer back at once rather than a retry.
		wait := c.next(n, prev, c.random())
		if ev.RetryAfter > c.maxDelay {
			c.footprint(ctx, footprintGiveUp, controller, &ev)
			v, err := giveUp(v, err, fail)
			return v, outcomeRetryAfterTooLong, err
		}
		wait = max(wait, ev.RetryAfter)
		// Give up now if the wait would end at or past the deadline: the
		// next attempt would have no time left.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			fail.Cause = context.DeadlineExceeded
			c.footprint(ctx, footprintGiveUp, controller, &ev)
			v, err := giveUp(v, err, fail)
			return v, outcomeDeadline, err
		}
		// Spend from the retry budget, if there is one.
		if c.budget != nil && !c.budget.allowRetry(time.Now()) {
			fail.Cause = ErrBudgetExhausted
			c.footprint(ctx, footprintBudget, controller, &ev)
			v, err := giveUp(v, err, fail)
			return v, outcomeBudgetExhausted, err
		}
		// Tell the observers, free the failed result, and wait.
		ev.Delay = wait
		c.metrics.retry(h.method, vd.category)
		c.footprint(ctx, footprintRetry, controller, &ev)
		if c.onRetry != nil {
			c.onRetry(ev)
		}
		if h.release != nil {
			h.release(v)
		}
		if !sleep(ctx, wait) {
			fail.Cause = contextError(ctx)
			return zero, outcomeOfContext(ctx.Err()), fail
		}
		c.metrics.slept(wait)
		prev = wait
	}
}

// notRetried writes the footprint of attempt n, a retryable failure that
// is not retried because of the request (its method, or a body that cannot
// be sent again), so that the reason is in the log.
func notRetried[T any](ctx context.Context, c *config, controller string, h *hooks[T], n int, v T, vd verdict) {
	ev := Event{Name: c.name, Attempt: n, MaxAttempts: c.maxAttempts, Err: vd.err, Category: vd.category, RetryAfter: -1}
	if ev.Name == "" {
		ev.Name = h.name()
	}
	if h.describe != nil {
		h.describe(&ev, v)
	}
	if ev.Err == nil && ev.Response != nil {
		ev.Err = &statusError{ev.Response.Status}
	}
	kind := footprintNotIdempotent
	if vd.outcome == outcomeBodyNotReplayable {
		kind = footprintNotReplayable
	}
	c.footprint(ctx, kind, controller, &ev)
}

// giveUp returns the final result of a loop that stops on a retryable
// failure: a result without an error (an HTTP response with a retryable
// status) as it is, else e, which wraps the error.
func giveUp[T any](v T, err error, e *Error) (T, error) {
	if err == nil {
		return v, nil
	}
	var zero T
	return zero, e
}

// sleep waits for d or until ctx is done, and reports whether the wait ran
// its course.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
