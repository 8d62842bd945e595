package retry

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"strings"
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
		c.applyCallOptions(ropts)
	}
	return doWith(ctx, &c, fn, fn)
}

// DoErr is Do for functions that return only an error.
func DoErr(ctx context.Context, fn func(context.Context) error, opts ...Option) error {
	c := newConfig(opts)
	if ropts := requestOptions(ctx); ropts != nil {
		c.applyCallOptions(ropts)
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
			rc.applyCallOptions(ropts)
			return doWith(ctx, &rc, fn, fn)
		}
		return doWith(ctx, &c, fn, fn)
	}
}

// doWith runs fn under c; named is the function whose name footprints show
// when WithName was not given (fn itself, or the caller's function that fn
// adapts).
func doWith[T any](ctx context.Context, c *config, fn func(context.Context) (T, error), named any) (T, error) {
	return run(ctx, c, &doCall, hooks[T]{
		attempt: fn,
		judge: func(_ T, err error) verdict {
			if err == nil {
				return verdict{stop: true}
			}
			return c.judge(err)
		},
		name:     func() string { return funcName(named) },
		describe: describeFuncError[T],
	})
}

// doCall names Do's calls to the loop.
var doCall = call{controller: "retry.Do"}

// judge decides whether Do retries fn's error (not nil).
func (c *config) judge(err error) verdict {
	if e, ok := unpermanent(err); ok {
		return verdict{stop: true, err: e, outcome: outcomeNotRetryable}
	}
	if !c.retryable(err) {
		return verdict{stop: true, err: err, outcome: outcomeNotRetryable}
	}
	return verdict{err: err}
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
