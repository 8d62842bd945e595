package retry

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// attemptTimer bounds one attempt of a Transport until its response
// headers arrive (WithAttemptTimeout). The attempt's context is not made
// with context.WithTimeout: the bound must stop applying once the headers
// are in, while the caller reads the body.
//
// The timer and the attempt race to the end, and exactly one of them wins,
// through one compare-and-swap on state: either the timer fired first (the
// attempt is a Timeout, whatever the base returned) or the attempt returned
// first (the timer will never cancel its context; the context lives until
// the caller closes the body).
type attemptTimer struct {
	state  atomic.Int32
	cancel context.CancelFunc
	timer  *time.Timer
}

const (
	timerRunning int32 = iota
	timerFired
	timerStopped
)

// startAttemptTimer returns ctx bounded by d and its timer.
func startAttemptTimer(ctx context.Context, d time.Duration) (context.Context, *attemptTimer) {
	actx, cancel := context.WithCancel(ctx)
	t := &attemptTimer{cancel: cancel}
	t.timer = time.AfterFunc(d, func() {
		if t.state.CompareAndSwap(timerRunning, timerFired) {
			cancel()
		}
	})
	return actx, t
}

// stop ends the race from the attempt's side. It reports whether the timer
// fired first: then the attempt's context is canceled (or about to be) and
// its result must be discarded. Otherwise the timer can no longer fire; the
// caller owns cancel from then on.
func (t *attemptTimer) stop() (fired bool) {
	if !t.state.CompareAndSwap(timerRunning, timerStopped) {
		return true
	}
	t.timer.Stop()
	return false
}

// attemptTimeoutError is the error of an attempt that ran out of its
// WithAttemptTimeout. It is a net.Error timeout and matches
// context.DeadlineExceeded, but not context.Canceled.
type attemptTimeoutError struct{ d time.Duration }

func (e *attemptTimeoutError) Error() string {
	return "retry: attempt timed out after " + e.d.String()
}
func (e *attemptTimeoutError) Timeout() bool        { return true }
func (e *attemptTimeoutError) Temporary() bool      { return true }
func (e *attemptTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// cancelOnClose wraps a response body so that closing it releases the
// attempt's context. A body that can also be written to (a 101 Switching
// Protocols response) stays writable.
func cancelOnClose(body io.ReadCloser, cancel context.CancelFunc) io.ReadCloser {
	if w, ok := body.(io.Writer); ok {
		return &cancelRWBody{cancelBody{body, cancel}, w}
	}
	return &cancelBody{body, cancel}
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// cancelRWBody is a cancelBody that keeps the body's Write.
type cancelRWBody struct {
	cancelBody
	io.Writer
}

// drainLimit and drainTimeout bound the reading of a response that is
// being retried: enough to let a small error body through so that the
// connection can be reused, never long enough to hold up the retry.
const (
	drainLimit   = 64 << 10
	drainTimeout = 100 * time.Millisecond
)

// drainAndClose reads at most drainLimit bytes of a response that is being
// retried, for at most drainTimeout, and closes it. A body that stalls is
// closed under the read (net/http's bodies allow a Close concurrent with a
// Read, and it makes the Read return); the connection is then not reused.
func drainAndClose(resp *http.Response) {
	if resp == nil {
		return
	}
	body := resp.Body
	t := time.AfterFunc(drainTimeout, func() { _ = body.Close() })
	_, _ = io.CopyN(io.Discard, body, drainLimit)
	if t.Stop() {
		_ = body.Close()
	}
}
