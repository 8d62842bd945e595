package retry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
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
//   - drains (at most 64 KiB, for at most 100ms) and closes the body of
//     every response it retries (a body that stalls is closed under the
//     drain's Read, which net/http's bodies allow: a base of your own must
//     allow it too), and never reads the body of the response it returns
//     (with WithAttemptTimeout it wraps it, so that closing it releases the
//     attempt's timer);
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
//
// The zero Transport is ready to use and behaves as NewTransport(nil) does;
// its defaults are set on first use.
type Transport struct {
	once sync.Once
	base http.RoundTripper
	cfg  config
	// latencies are the recent latencies of each host, http and https,
	// for a Hedge's Quantile.
	latencies [2]hostTable[latencies]
}

// NewTransport returns a Transport that sends attempts through base; nil
// means cleanhttp.DefaultPooledTransport(), a pooled transport with
// timeouts of its own. The options are those of Do (attempts, sleep time,
// backoff, max delay, jitter, log tries, logger, name, on-retry, budget) and
// the HTTP ones (WithClassifier, WithRetryNonIdempotent,
// WithMaxBufferedBody, WithAttemptTimeout, WithAttemptHeader,
// WithPrepareRetry, WithMetrics, WithHostCooldown, WithHedge,
// WithResumeBody). Without WithBudget, the Transport gets a Budget of its
// own with the default fields. WithRequestOptions adds
// options for one request.
//
// NewTransport panics, with the message Do would return, if an option is
// invalid: that is a programming error, as with regexp.MustCompile.
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	c := newConfig(opts)
	if c.err != nil {
		panic(c.err.Error())
	}
	t := &Transport{base: base, cfg: c}
	t.once.Do(t.setDefaults)
	return t
}

// setDefaults fills in what NewTransport(nil) would: the base, the budget,
// and the defaults of a zero config.
func (t *Transport) setDefaults() {
	if t.base == nil {
		t.base = cleanhttp.DefaultPooledTransport()
	}
	if t.cfg.maxAttempts == 0 { // a zero Transport
		t.cfg = defaultConfig()
	}
	if !t.cfg.budgetSet {
		t.cfg.budget = &Budget{}
	}
	t.cfg.cooldowns = newCooldowns()
	if t.cfg.metricsSrc != nil {
		t.cfg.metrics = t.cfg.metricsSrc.forClient(t.cfg.name)
	}
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
	t.once.Do(t.setDefaults) // a zero Transport's base is set on first use
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as described on Transport. It implements
// http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.setDefaults)
	if opts := requestOptions(req.Context()); opts != nil {
		return t.roundTripWith(req, opts)
	}
	return t.roundTrip(req, &t.cfg)
}

// roundTripWith sends req under the Transport's options and, on top, the
// options its context carries (WithRequestOptions). Kept apart so that
// RoundTrip's own frame stays small.
func (t *Transport) roundTripWith(req *http.Request, opts []Option) (*http.Response, error) {
	c := t.cfg
	c.applyRequestOptions(opts)
	return t.roundTrip(req, &c)
}

// roundTrip sends req under c.
func (t *Transport) roundTrip(req *http.Request, c *config) (*http.Response, error) {
	if err := requestError(c, req); err != nil {
		closeBody(req)
		c.done(req.Context(), &call{controller: controllerTransport, method: req.Method}, outcomeRequestError)
		return nil, err
	}
	if c.http.hedge != nil && (c.http.retryNonIdempotent || isIdempotent(req)) {
		return t.roundTripHedged(req, c)
	}
	rt := roundTrip{t: t, c: c, req: req}
	return rt.exchange(rt.attempt, nil)
}

// roundTripHedged is roundTrip for a request that may be hedged. Its
// roundTrip lives on the heap, since the attempts of a round share it: kept
// apart, so that the roundTrip of a request that is not hedged stays on
// the stack (escape analysis sees each function as a whole).
func (t *Transport) roundTripHedged(req *http.Request, c *config) (*http.Response, error) {
	h := &hedgedRoundTrip{roundTrip: roundTrip{t: t, c: c, req: req}, hedge: c.http.hedge}
	h.hr.rt = h
	return h.exchange(h.round, h.made)
}

// exchange prepares the request's body, runs the loop with attempt, and
// lets go of the body.
func (rt *roundTrip) exchange(attempt func(context.Context) (*http.Response, error), made func() (int, int, bool)) (*http.Response, error) {
	req, c := rt.req, rt.c
	cl := call{controller: controllerTransport, method: req.Method, host: req.URL.Host}
	if err := rt.body.prepare(req, c.http.maxBufferedBody); err != nil {
		// An unreadable body, or the context ended while it was read.
		o := outcomeRequestError
		if cerr := req.Context().Err(); cerr != nil {
			o = outcomeOfContext(cerr)
		}
		c.done(req.Context(), &cl, o)
		return nil, err
	}
	resp, err := run(req.Context(), c, &cl, hooks[*http.Response]{
		attempt:  attempt,
		judge:    rt.judge,
		release:  drainAndClose,
		name:     rt.name,
		describe: rt.describe,
		made:     made,
	})
	rt.body.finish()
	if err == nil && c.http.maxResumes > 0 {
		resp = resumable(rt.t, c, req, resp, rt.n)
	}
	return resp, err
}

// controllerTransport names the Transport in footprints.
const controllerTransport = "retry.Transport"

// requestError reports why req cannot be sent at all, if it cannot.
func requestError(c *config, req *http.Request) error {
	switch {
	case c.err != nil:
		return c.err
	case req.URL == nil:
		return errors.New("retry: request has no URL")
	}
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// roundTrip is the state of one RoundTrip call.
type roundTrip struct {
	t    *Transport
	c    *config // the Transport's, or a copy with the request's options
	req  *http.Request
	body requestBody
	n    int      // attempts made
	url  *url.URL // see secrets
}

// holdOffHost starts the host's cooldown when its 429 or 503 asks, with a
// Retry-After within the max delay, to be left alone (see
// WithHostCooldown). A longer Retry-After stops this request's retries
// instead, and starts no cooldown.
func (rt *roundTrip) holdOffHost(resp *http.Response) {
	now := time.Now()
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok && d <= rt.c.maxDelay {
		rt.c.cooldowns.hold(rt.req.URL.Host, now, d)
		if rt.c.shared != nil {
			rt.c.shared.HoldOff(rt.req.URL.Host, now.Add(d))
		}
	}
}

// attempt makes the next attempt (see round for a hedged request).
func (rt *roundTrip) attempt(ctx context.Context) (*http.Response, error) {
	rt.n++
	return rt.send(ctx, rt.n, false)
}

// send sends attempt n, under ctx, on a copy of the request, or on the
// caller's own request when nothing in it has to change (the base may not
// modify it, so that is the same and saves an allocation). It may run in
// several goroutines at once, for the attempts of a hedged round: it
// changes nothing in rt but what is safe for that (the body's buffer
// references, the cooldowns).
func (rt *roundTrip) send(ctx context.Context, n int, hedge bool) (*http.Response, error) {
	if n > 1 || hedge {
		ctx = context.WithValue(ctx, attemptKey{}, AttemptInfo{Number: n, Hedge: hedge})
	}
	hc := &rt.c.http
	prepare := hc.prepareRetry != nil && n > 1
	r := rt.req
	var timer *attemptTimer
	if hc.attemptTimeout > 0 {
		var actx context.Context
		actx, timer = startAttemptTimer(ctx, hc.attemptTimeout)
		r = r.WithContext(actx)
	} else if n > 1 || ctx != rt.req.Context() {
		r = r.WithContext(ctx) // an AttemptInfo, or a hedged round's attempt context
	} else if hc.attemptHeader != "" || prepare || rt.body.changes(n) {
		r = new(http.Request)
		*r = *rt.req
	}
	if hc.attemptHeader != "" || prepare {
		// The copy's header map (and URL, for WithPrepareRetry) are its
		// own: the caller's request never changes.
		r.Header = rt.req.Header.Clone()
		if r.Header == nil {
			r.Header = make(http.Header, 1)
		}
	}
	if hc.attemptHeader != "" {
		r.Header.Set(hc.attemptHeader, strconv.Itoa(n))
	}
	var fatal *unsentError
	if err := rt.body.set(r, n); err != nil {
		fatal = &unsentError{err, outcomeBodyNotReplayable}
	} else if prepare {
		u := *rt.req.URL
		r.URL = &u
		if err := hc.prepareRetry(r); err != nil {
			if r.Body != nil && r.Body != rt.req.Body {
				_ = r.Body.Close()
			}
			fatal = &unsentError{fmt.Errorf("retry: WithPrepareRetry for attempt %d: %w", n, err), outcomeRequestError}
		}
	}
	if fatal != nil {
		if timer != nil {
			timer.stop()
			timer.cancel()
		}
		return nil, fatal
	}

	resp, err := baseRoundTrip(rt.t.base, r)
	if resp != nil && !rt.c.http.noCooldown {
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			rt.holdOffHost(resp)
		} else {
			rt.c.cooldowns.answered(rt.req.URL.Host)
		}
	}
	if timer == nil {
		return resp, err
	}
	if timer.stop() {
		// The attempt's time ran out, possibly just as the response
		// arrived; its body could not be read now.
		if resp != nil {
			_ = resp.Body.Close()
		}
		timer.cancel()
		return nil, &attemptTimeoutError{hc.attemptTimeout}
	}
	if err != nil {
		timer.cancel()
		return nil, err
	}
	// Keep the attempt's context live until the caller closes the body.
	resp.Body = cancelOnClose(resp.Body, timer.cancel)
	return resp, nil
}

// errNilResponse is wrapped by the error of a base RoundTripper that
// broke its contract, which names the base's type as net/http does.
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
		return nil, fmt.Errorf("%w (%T)", errNilResponse, base)
	case err == nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}

// judge decides whether attempt rt.n's outcome is retried. Whether the
// caller gave up is decided by the loop from the context, never from the
// error: the base's header timeout also matches DeadlineExceeded.
func (rt *roundTrip) judge(resp *http.Response, err error) verdict {
	cat := rt.c.http.classify(resp, err)
	switch {
	case cat == Success && err == nil:
		return verdict{stop: true, category: cat}
	case !cat.Retryable():
		// Also an error that a classifier calls Success: an error is never
		// turned into a nil response with a nil error.
		return verdict{stop: true, err: err, category: cat, outcome: outcomeNotRetryable}
	case !rt.c.http.retryNonIdempotent && !mayRetry(rt.req, resp, err, cat):
		return verdict{stop: true, err: rt.notRetried(err, cat, ErrNotIdempotent), category: cat, outcome: outcomeNotRetryable}
	case !rt.body.replayable():
		return verdict{stop: true, err: rt.notRetried(err, cat, ErrNotReplayable), category: cat, outcome: outcomeBodyNotReplayable}
	}
	if resp != nil {
		err = &statusError{resp.Status}
	}
	return verdict{err: err, category: cat}
}

// notRetried returns the error of a retryable failure that is not retried
// for reason: err inside an *Error that names the reason, or nil for a
// response, which is returned as it is.
func (rt *roundTrip) notRetried(err error, cat Category, reason error) error {
	if err == nil {
		return nil
	}
	return &Error{Attempts: rt.n, Err: err, Category: cat, Cause: reason, url: rt.secrets()}
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
	ev.reqURL = rt.secrets()
	if resp != nil {
		ev.Response = resp
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			ev.RetryAfter = d
		}
	}
}

// secrets returns a copy of the request's URL, taken once per RoundTrip,
// from which footprints and *Error messages learn what to redact. A copy,
// since the caller may change req.URL once RoundTrip has returned (the next
// page's token) while the *Error lives on.
func (rt *roundTrip) secrets() *url.URL {
	if rt.url == nil {
		u := *rt.req.URL
		rt.url = &u
	}
	return rt.url
}

// statusError describes a response with a retryable status, for events and
// for the *Error of a loop that stopped on one.
type statusError struct{ status string }

func (e *statusError) Error() string { return "retry: server answered " + e.status }
