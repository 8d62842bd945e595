package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// Transport is an http.RoundTripper that retries failed requests under the
// options' exponential schedule. Put it in any http.Client, or hand that
// client (or the Transport itself) to an SDK:
//
//	client := &http.Client{Transport: retry.NewTransport(nil)}
//
// For each request, RoundTrip:
//   - sends attempts on copies of the request and never changes the
//     caller's request (headers, URL, body, context);
//   - classifies each attempt's response or error into a Category (see
//     Classify and WithClassifier);
//   - retries retryable categories for idempotent requests (GET, HEAD,
//     OPTIONS, TRACE, PUT, DELETE, or any request with an Idempotency-Key
//     or X-Idempotency-Key header); other requests only when the server
//     provably did not process them (DialError, 429, 503), unless
//     WithRetryNonIdempotent(true);
//   - replays the request body from GetBody, or from a buffer of at most
//     WithMaxBufferedBody bytes; a larger body without GetBody is sent once
//     and not retried;
//   - waits max(backoff, Retry-After); a Retry-After longer than the max
//     delay, or a wait that would end past the request context's deadline,
//     stops the retries and returns what the last attempt got;
//   - drains (at most 64 KiB) and closes the body of every response it
//     retries, and never touches the body of the response it returns;
//   - spends each retry from a retry budget (see Budget; each Transport
//     has its own unless WithBudget says otherwise), and counts attempts,
//     retries, outcomes and waits in WithMetrics' Metrics, if any.
//
// When the retries run out on a retryable status, RoundTrip returns that
// last response, body unread, and a nil error, as a plain transport would.
// When they run out on an error, it returns a *Error wrapping the last
// error. It never returns a response and an error together. The caller's
// request body is closed exactly once, on every path.
//
// A Transport is safe for concurrent use by many goroutines.
type Transport struct {
	base http.RoundTripper
	cfg  config
}

// NewTransport returns a Transport that sends attempts through base; nil
// means cleanhttp.DefaultPooledTransport(), a pooled transport with
// timeouts of its own. The options are those of Do (attempts, sleep time,
// backoff, max delay, jitter, log tries, logger, name, on-retry, budget) and
// the HTTP ones (WithClassifier, WithRetryNonIdempotent,
// WithMaxBufferedBody, WithAttemptTimeout, WithAttemptHeader, WithMetrics).
// Without WithBudget, the Transport gets a Budget of its own with the
// default fields.
//
// NewTransport panics, with the message Do would return, if an option is
// invalid: that is a programming error, as with regexp.MustCompile.
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	c := newConfig(opts)
	if c.err != nil {
		panic(c.err.Error())
	}
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	if !c.budgetSet {
		c.budget = &Budget{}
	}
	if c.metricsSrc != nil {
		c.metrics = c.metricsSrc.forClient(c.name)
	}
	return &Transport{base: base, cfg: c}
}

// NewClient returns cleanhttp.DefaultPooledClient() with its transport
// wrapped in a Transport built from opts. Its Timeout (none by default)
// bounds all attempts together; NewClient panics on an invalid option.
func NewClient(opts ...Option) *http.Client {
	client := cleanhttp.DefaultPooledClient()
	client.Transport = NewTransport(client.Transport, opts...)
	return client
}

// CloseIdleConnections closes the base transport's idle connections, if it
// has a CloseIdleConnections method. http.Client.CloseIdleConnections calls
// it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as described on Transport. It implements
// http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, fmt.Errorf("retry: request has no URL")
	}
	rt := roundTrip{t: t, req: req}
	if err := rt.body.prepare(req, t.cfg.http.maxBufferedBody); err != nil {
		return nil, err
	}
	resp, err := run(req.Context(), &t.cfg, "retry.Transport", hooks[*http.Response]{
		attempt:  rt.attempt,
		judge:    rt.judge,
		release:  drainAndClose,
		name:     rt.name,
		describe: rt.describe,
		method:   req.Method,
	})
	rt.body.finish()
	return resp, err
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// roundTrip is the state of one RoundTrip call.
type roundTrip struct {
	t    *Transport
	req  *http.Request
	body requestBody
	n    int // attempts made

	// replayable is false once an attempt sent a body that cannot be sent
	// again (or GetBody failed).
	replayable bool
	// fatal is an error of this package's own, not the base's: it stops the
	// loop as it is.
	fatal error
}

// attempt sends the next attempt on a copy of the request, or on the
// caller's own request when nothing in it has to change (the base may not
// modify it, so that is the same and saves an allocation).
func (rt *roundTrip) attempt(ctx context.Context) (*http.Response, error) {
	rt.n++
	hc := &rt.t.cfg.http
	r := rt.req
	var cancel context.CancelFunc
	var timer *time.Timer
	var timedOut *atomic.Bool
	if hc.attemptTimeout > 0 {
		// Not context.WithTimeout: the deadline must stop applying once the
		// headers are in, while the caller reads the body.
		var actx context.Context
		actx, cancel = context.WithCancel(ctx)
		timedOut = new(atomic.Bool)
		timer = time.AfterFunc(hc.attemptTimeout, func() {
			timedOut.Store(true)
			cancel()
		})
		r = r.WithContext(actx)
	} else if hc.attemptHeader != "" || rt.body.changes(rt.n) {
		r = new(http.Request)
		*r = *rt.req
	}
	if hc.attemptHeader != "" {
		r.Header = rt.req.Header.Clone()
		if r.Header == nil {
			r.Header = make(http.Header, 1)
		}
		r.Header.Set(hc.attemptHeader, strconv.Itoa(rt.n))
	}
	replayable, err := rt.body.set(r, rt.n)
	rt.replayable = replayable
	if err != nil {
		if cancel != nil {
			timer.Stop()
			cancel()
		}
		rt.fatal = err
		return nil, err
	}

	resp, err := baseRoundTrip(rt.t.base, r)
	if cancel == nil {
		return resp, err
	}
	if !timer.Stop() && timedOut.Load() {
		// The attempt's time ran out, possibly just after the response
		// arrived; its body could not be read now.
		if resp != nil {
			_ = resp.Body.Close()
		}
		cancel()
		return nil, &attemptTimeoutError{hc.attemptTimeout}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	// Keep the attempt's context live until the caller closes the body.
	resp.Body = cancelOnClose(resp.Body, cancel)
	return resp, nil
}

var errNilResponse = errors.New("retry: the base RoundTripper returned neither a response nor an error")

// baseRoundTrip calls base and holds it to the RoundTripper contract, as
// http.Client does: exactly one of response and error.
func baseRoundTrip(base http.RoundTripper, r *http.Request) (*http.Response, error) {
	resp, err := base.RoundTrip(r)
	switch {
	case err != nil && resp != nil:
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		return nil, err
	case err == nil && resp == nil:
		return nil, errNilResponse
	case err == nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}

// judge decides whether attempt rt.n's outcome is retried.
func (rt *roundTrip) judge(resp *http.Response, err error) verdict {
	if rt.fatal != nil {
		return verdict{stop: true, err: err, category: Fatal, outcome: outcomeBodyNotReplayable}
	}
	// Whether the caller gave up is decided from its context, never from
	// the error: the base's header timeout also matches DeadlineExceeded.
	if cerr := rt.req.Context().Err(); cerr != nil {
		return verdict{stop: true, err: err, category: Canceled, outcome: outcomeOfContext(cerr)}
	}
	cat := rt.t.cfg.http.classify(resp, err)
	switch {
	case cat == Success:
		return verdict{stop: true, category: cat}
	case !cat.Retryable() || !rt.mayRetry(cat, resp):
		return verdict{stop: true, err: err, category: cat, outcome: outcomeNotRetryable}
	case !rt.replayable:
		return verdict{stop: true, err: err, category: cat, outcome: outcomeBodyNotReplayable}
	}
	if resp != nil {
		err = &statusError{resp.Status}
	}
	return verdict{err: err, category: cat}
}

// mayRetry applies the idempotency rule.
func (rt *roundTrip) mayRetry(cat Category, resp *http.Response) bool {
	if rt.t.cfg.http.retryNonIdempotent || isIdempotent(rt.req) {
		return true
	}
	// The server provably did not process the request.
	return cat == DialError || resp != nil &&
		(resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable)
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return len(req.Header["Idempotency-Key"]) > 0 || len(req.Header["X-Idempotency-Key"]) > 0
}

func (rt *roundTrip) method() string {
	if rt.req.Method == "" {
		return http.MethodGet
	}
	return rt.req.Method
}

func (rt *roundTrip) name() string { return rt.method() + " " + RedactURL(rt.req.URL) }

// describe adds to the event of a failed attempt what the request and its
// response say: method, redacted URL, the response and its Retry-After.
func (rt *roundTrip) describe(ev *Event, resp *http.Response) {
	ev.Method = rt.method()
	ev.URL = RedactURL(rt.req.URL)
	if resp != nil {
		ev.Response = resp
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			ev.RetryAfter = d
		}
	}
}

// drainAndClose reads at most 64 KiB of a response that is being retried,
// so that its connection can be reused, and closes it.
func drainAndClose(resp *http.Response) {
	if resp == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// statusError describes a response with a retryable status, for events and
// for the *Error of a loop that stopped on one.
type statusError struct{ status string }

func (e *statusError) Error() string { return "retry: server answered " + e.status }

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
