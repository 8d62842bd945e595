package retry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Error is returned, as *Error, when the loop gives up on a retryable
// failure, or stops short of one: the attempts ran out, the caller's
// context ended, the next wait would pass the context's deadline, the
// retry budget said no, the request may not be retried (a Transport's
// non-idempotent request or unreplayable body), or the next attempt could
// not be made (GetBody or WithPrepareRetry failed). errors.Is and
// errors.As reach both the last attempt's error and the Cause.
type Error struct {
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the last attempt's error; when the caller's context cut the
	// last attempt short, the failure of the attempt before it, if any.
	Err error
	// Category is the last attempt's classification (Unknown for Do).
	Category Category
	// Cause is why the loop stopped before the attempts ran out, or why a
	// retryable failure was not retried; nil when the attempts ran out:
	//   - the caller's context ended: an error matching both ctx.Err()
	//     (context.Canceled or context.DeadlineExceeded) and
	//     context.Cause(ctx);
	//   - the next wait would pass the context's deadline:
	//     context.DeadlineExceeded;
	//   - the retry budget denied the retry: ErrBudgetExhausted;
	//   - the request may not be retried (a Transport): ErrNotIdempotent or
	//     ErrNotReplayable;
	//   - the next attempt could not be made (a Transport): the error of
	//     GetBody (which matches ErrNotReplayable too) or of
	//     WithPrepareRetry; Attempts then counts the attempts sent;
	//   - the host's cooldown would outlast the deadline: an error matching
	//     ErrHostCoolingDown and context.DeadlineExceeded.
	Cause error

	// url is the request's URL, set by a Transport: Error removes its
	// secrets from the message.
	url *url.URL
}

// Error returns a message such as
// "retry: giving up after 3 attempts: connection refused". The message
// holds no secret of a URL: every URL in it is written as RedactURL writes
// it, and for a Transport's request the secrets of its URL (user,
// password, query values, fragment) are removed wherever they appear in
// the wrapped errors' text (see redactText). The wrapped errors themselves
// are left as they are.
func (e *Error) Error() string {
	var msg string
	if e.Cause != nil {
		msg = fmt.Sprintf("retry: stopped after %d %s (%s): %s", e.Attempts, plural(e.Attempts), unprefixed(e.Cause), unprefixed(e.Err))
	} else {
		msg = fmt.Sprintf("retry: giving up after %d %s: %s", e.Attempts, plural(e.Attempts), unprefixed(e.Err))
	}
	return redactText(msg, e.url)
}

// Unwrap returns the cause, if any, and the last attempt's error, so that
// errors.Is and errors.As see both.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Cause, e.Err}
	}
	return []error{e.Err}
}

// unprefixed returns err's text without this package's "retry: " prefix,
// so that a message says "retry:" once: "retry: stopped after 1 attempt
// (retry budget exhausted): server answered 503 Service Unavailable".
func unprefixed(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.TrimPrefix(err.Error(), "retry: ")
}

func plural(n int) string {
	if n == 1 {
		return "attempt"
	}
	return "attempts"
}

// Permanent marks err as not worth retrying: when fn returns it, Do stops at
// once and returns err itself, not wrapped. An error that wraps a Permanent
// one (fmt.Errorf("...: %w", retry.Permanent(err))) also stops the loop and
// is returned as it is. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// unpermanent reports whether err is or wraps an error made by Permanent.
// It returns the error to hand back: the marked error itself when Permanent
// is outermost, else err as it is, so that context added around it stays.
func unpermanent(err error) (error, bool) {
	if p, ok := err.(*permanentError); ok {
		return p.err, true
	}
	var p *permanentError
	return err, errors.As(err, &p)
}

// ErrNotIdempotent is the Cause of the *Error a Transport returns when an
// attempt failed with a retryable error (a reset, a timeout, ...) but the
// request may not be retried: its method is not idempotent, it carries no
// Idempotency-Key, and the server may have processed it. See
// WithRetryNonIdempotent.
var ErrNotIdempotent = errors.New("retry: not retried: the request is not idempotent")

// ErrNotReplayable is the Cause of the *Error a Transport returns when an
// attempt failed with a retryable error but the request body cannot be
// sent again: it was larger than WithMaxBufferedBody and has no GetBody,
// or its GetBody failed.
var ErrNotReplayable = errors.New("retry: not retried: the request body cannot be sent again")

// RetryAfter marks err with the wait that fn asks for before the next
// attempt, as an HTTP server does with Retry-After: when fn's error is or
// wraps one made by RetryAfter, Do waits max(backoff, d) (a negative d
// counts as 0). A d above the max delay stops the retries at once, and so
// does a wait that would pass the context's deadline; Do then returns an
// *Error wrapping the error. err keeps its identity: errors.Is and
// errors.As see through the mark. RetryAfter(d, nil) is nil.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{d: max(d, 0), err: err}
}

type retryAfterError struct {
	d   time.Duration
	err error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// contextError returns the error of a context that has ended: ctx.Err(),
// or, when the context was given a cause of its own
// (context.WithCancelCause, WithTimeoutCause, ...), an error that matches
// both that cause and ctx.Err().
func contextError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return &causeError{cause: cause, err: err}
	}
	return err
}

// causeError is a context's cause together with its error.
type causeError struct{ cause, err error }

func (e *causeError) Error() string   { return e.cause.Error() }
func (e *causeError) Unwrap() []error { return []error{e.cause, e.err} }
