package retry

import (
	"errors"
	"fmt"
	"net/url"
)

// Error is returned, as *Error, when the loop gives up on a retryable
// failure: the attempts ran out, the caller's context ended, or the next
// wait would pass the context's deadline. errors.Is and errors.As reach both
// the last attempt's error and, when the loop stopped early, the reason
// (context.Canceled or context.DeadlineExceeded).
type Error struct {
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the last attempt's error.
	Err error
	// Category is the last attempt's classification (Unknown for Do).
	Category Category
	// Cause is why the loop stopped before the attempts ran out:
	// context.Canceled or context.DeadlineExceeded (from the caller's
	// context, or because the next wait would pass its deadline). It is nil
	// when the attempts ran out.
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
		msg = fmt.Sprintf("retry: stopped after %d %s (%v): %v", e.Attempts, plural(e.Attempts), e.Cause, e.Err)
	} else {
		msg = fmt.Sprintf("retry: giving up after %d %s: %v", e.Attempts, plural(e.Attempts), e.Err)
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
