package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrResumeMismatch is matched by the error a resumable body's Read returns
// (see WithResumeBody) when it cannot carry on without risking bytes of
// another version of the resource: the server answered the range request
// with a 200 (the resource changed, or it ignored the range), a 416, a
// Content-Range that does not start where the body broke or names another
// length, another ETag, or an encoded body. The bytes read before it are
// all of the first version.
var ErrResumeMismatch = errors.New("retry: cannot resume the response body")

type resumeBodyOption int

func (resumeBodyOption) isOption() {}

// WithResumeBody makes a Transport resume a response body that breaks in
// the middle, up to maxResumes times; 0 (the default) turns it off, and a
// negative count is an ErrInvalidOption. Usable per request with
// WithRequestOptions. Do ignores it.
//
// Eligible is a GET without a Range header of its own answered 200 with
// Accept-Ranges: bytes and a strong validator: a strong ETag, or else a
// Last-Modified at least a second older than the response's Date (RFC
// 9110, section 8.8.2.2; without a Date it is not strong). Its body must be
// sent as it is (no Content-Encoding other than identity, and not
// decompressed by net/http: resp.Uncompressed false), so that offsets are
// offsets of the bytes on the wire. Its body is wrapped; anything else is
// returned untouched.
//
// When a Read fails with an error worth retrying (a reset, an unexpected
// EOF, a timeout) before all of the body's length (Content-Length, or the
// total a range response names; without either, a clean EOF) has arrived,
// the body waits, and sends the request again with Range: bytes=N- and
// If-Range: the validator, for the N bytes delivered so far, under the
// request's context and the Transport's options (attempt timeout, attempt
// header, WithPrepareRetry: a resume is an attempt); then it carries on
// reading from the new response. The caller sees one uninterrupted stream,
// never a byte past the body's length.
//
// The waits follow the schedule, which starts again whenever bytes arrived
// since the last resume; a 429 or 503 with a Retry-After is waited for (a
// longer one than the max delay, or a wait past the context's deadline,
// ends the body). A resume try that follows progress is free; every other
// try spends a retry from the budget, so that a server that delivers
// nothing is not hammered, while a download on a flaky connection is not
// capped by the budget's floor. A try that fails in a way worth retrying
// (a 503, another reset) is tried again, each counting as a resume.
//
// Only a 206 whose Content-Range starts exactly at N, whose length is its
// range's, with the same total (and the same ETag, when it carries one) is
// accepted; a 416 that says the body ended at N ends it cleanly (the break
// came with its last byte). Anything else that a server sends to resume
// makes Read return an error wrapping ErrResumeMismatch, never bytes of
// another version: a 200, another 416, a different range, length, total or
// ETag, an encoded range. Another status (403, 404) ends the body too,
// reported as failed. After maxResumes resumes, a denied budget, or an
// error not worth retrying, Read returns an error that wraps the read error
// that broke the body (and why it could not go on). Errors are redacted of
// the request URL's secrets. A cancelled context ends a wait at once, with
// the context's error; Close closes whatever response is open, and stops a
// resume in progress.
//
// Each resume writes a footprint (WithLogTries; resumed_at is the byte it
// resumes at), giving up always writes one, and retry_http_resumes_total
// counts the resumes by result: ok, mismatch, failed. Bodies that never
// break cost one wrapper (one allocation) per eligible response.
func WithResumeBody(maxResumes int) Option { return resumeBodyOption(maxResumes) }

// resumeBody is an eligible response's body; see WithResumeBody. Read is
// used by one goroutine at a time, as for any body; Close may come from
// another.
type resumeBody struct {
	cfg config // a copy: the Transport's options, with the request's own
	t   *Transport
	req *http.Request
	u   url.URL // a copy of the request's URL, for redacting errors

	body    io.ReadCloser // the current response's
	n       int64         // bytes delivered to the caller
	total   int64         // the body's length; -1: unknown
	etag    string        // the 200's strong ETag, or ""
	ifRange string        // the validator sent in If-Range
	n0      int           // attempts before the body
	resumes int
	// tries counts the resume tries since bytes last arrived, at mark: the
	// schedule restarts and the budget is not asked after progress.
	tries   int
	mark    int64
	prev    time.Duration // the last wait
	pending error         // a read error held back while bytes went out
	err     error         // the error Read returns from now on

	mu     sync.Mutex // guards closed, cancel and body swaps against Close
	closed bool
	cancel context.CancelFunc // ends a resume in progress; set at the first
	ctx    context.Context
}

// resumable wraps resp's body when req and resp allow resuming it; see
// WithResumeBody. attempts is how many attempts the request made.
func resumable(t *Transport, c *config, req *http.Request, resp *http.Response, attempts int) *http.Response {
	if c.http.maxResumes <= 0 || resp.StatusCode != http.StatusOK || (req.Method != http.MethodGet && req.Method != "") ||
		req.Header.Get("Range") != "" || resp.Uncompressed || !acceptsRanges(resp.Header) || !identity(resp.Header) {
		return resp
	}
	etag, ifRange := resp.Header.Get("ETag"), ""
	switch {
	case etag != "" && !strings.HasPrefix(etag, "W/"):
		ifRange = etag
	case strongDate(resp.Header):
		etag, ifRange = "", resp.Header.Get("Last-Modified")
	default:
		return resp // no strong validator
	}
	resp.Body = &resumeBody{cfg: *c, t: t, req: req, u: *req.URL, body: resp.Body, total: resp.ContentLength,
		etag: etag, ifRange: ifRange, n0: attempts}
	return resp
}

// strongDate reports whether the response's Last-Modified is a strong
// validator (RFC 9110, section 8.8.2.2): at least a second older than its
// Date, so that no change within that second can hide behind it.
func strongDate(h http.Header) bool {
	lm, err1 := http.ParseTime(h.Get("Last-Modified"))
	date, err2 := http.ParseTime(h.Get("Date"))
	return err1 == nil && err2 == nil && date.Sub(lm) >= time.Second
}

func acceptsRanges(h http.Header) bool {
	for _, v := range h.Values("Accept-Ranges") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "bytes") {
				return true
			}
		}
	}
	return false
}

// identity reports whether the body is sent as it is.
func identity(h http.Header) bool {
	ce := h.Get("Content-Encoding")
	return ce == "" || strings.EqualFold(ce, "identity")
}

// Read reads from the current response, resuming it when it breaks. It
// never delivers a byte past the body's length.
func (r *resumeBody) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.total >= 0 && r.n >= r.total {
			return 0, io.EOF // all of it, whatever the connection does next
		}
		if r.total >= 0 && int64(len(p)) > r.total-r.n {
			p = p[:r.total-r.n]
		}
		var n int
		var err error
		if r.pending != nil {
			err, r.pending = r.pending, nil
		} else {
			n, err = r.body.Read(p)
			r.n += int64(n)
		}
		switch {
		case err == nil:
			return n, nil
		case r.total >= 0 && r.n >= r.total:
			return n, io.EOF // all of it (a break with the last byte changes nothing)
		case err == io.EOF && r.total < 0:
			return n, io.EOF
		case err == io.EOF:
			err = io.ErrUnexpectedEOF // short of Content-Length
		}
		if n > 0 {
			r.pending = err // the bytes first; the break at the next Read
			return n, nil
		}
		if r.err = r.resume(err); r.err != nil {
			return 0, r.err
		}
	}
}

// Close closes the current response and ends a resume in progress.
func (r *resumeBody) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.cancel != nil {
		r.cancel()
	}
	return r.body.Close()
}

// errResumeClosed is Read's error after Close.
var errResumeClosed = errors.New("retry: read on a closed response body")

// isClosed reports whether Close was called.
func (r *resumeBody) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// context returns the context of the resumes: the request's, ended by
// Close too. Nil after Close.
func (r *resumeBody) context() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(r.req.Context())
	}
	return r.ctx
}

// resume carries the body on after cause broke it: it waits, sends the
// range request and checks the answer, as many times as allowed, and
// returns nil once the body reads from a good answer, or the error Read
// returns from then on (which wraps cause, the read error that broke the
// body, and is redacted of the request URL's secrets).
func (r *resumeBody) resume(cause error) error {
	c := &r.cfg
	ctx := r.context()
	if ctx == nil {
		return errResumeClosed
	}
	if ctx.Err() != nil {
		return r.ended(ctx, cause)
	}
	if !c.http.classify(nil, cause).Retryable() {
		return r.redact(fmt.Errorf("retry: reading the body: %w", cause))
	}
	if r.n > r.mark {
		r.tries, r.mark = 0, r.n // bytes arrived since the last resume
	}
	host := r.req.URL.Host
	var last error // the last try's failure, if any
	retryAfter := time.Duration(-1)
	for {
		if r.resumes >= c.http.maxResumes {
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, r.brokeErr(fmt.Sprintf("%d resumes", r.resumes), cause, last))
		}
		r.tries++
		d := c.next(r.tries, r.prev, c.random())
		if retryAfter > d {
			if retryAfter > c.maxDelay {
				c.metrics.resume(resumeFailed)
				return r.giveUp(ctx, r.brokeErr(fmt.Sprintf("the server asked to wait %v, more than the max delay", retryAfter), cause, last))
			}
			d = retryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, r.brokeErr("the next resume would come after the deadline", cause, last, context.DeadlineExceeded))
		}
		// The first try after progress is free; the others spend a retry.
		if r.tries > 1 && !c.spendRetry(host) {
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, r.brokeErr("the retry budget is exhausted", cause, last, ErrBudgetExhausted))
		}
		r.prev = d
		r.resumes++
		r.tell(ctx, EventResume, d, cause)
		if !sleep(ctx, d) {
			return r.ended(ctx, cause)
		}
		resp, err := r.send(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return r.ended(ctx, cause)
			}
			if !c.http.classify(nil, err).Retryable() {
				c.metrics.resume(resumeFailed)
				return r.giveUp(ctx, r.brokeErr("resuming failed", cause, err))
			}
			last, retryAfter = err, -1 // try again
			continue
		}
		switch why, fatal := r.check(resp); {
		case why == "":
		case why == "end":
			_ = resp.Body.Close()
			r.total = r.n // the 416 says the body had ended: nothing was missing
			return io.EOF
		case !fatal && c.http.classify(resp, nil).Retryable():
			// A 503, a 429: try again, after its Retry-After if it has one.
			retryAfter = -1
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				retryAfter = ra
			}
			last = &statusError{resp.Status}
			drainAndClose(resp)
			continue
		case !fatal:
			// Another status (403, 404, …): the resource cannot be had.
			last = &statusError{resp.Status}
			_ = resp.Body.Close()
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, r.brokeErr("the server answered the range request "+resp.Status, cause, last))
		default:
			_ = resp.Body.Close()
			c.metrics.resume(resumeMismatch)
			err := r.redact(fmt.Errorf("%w after %d bytes: %s (the body broke: %w)", ErrResumeMismatch, r.n, why, cause))
			return r.giveUp(ctx, err)
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = resp.Body.Close()
			return errResumeClosed
		}
		_ = r.body.Close()
		r.body = resp.Body
		r.mu.Unlock()
		c.metrics.resume(resumeOK)
		return nil
	}
}

// ended is Read's error once the resumes' context ended: Close's, or the
// caller's context's error, with the read error that broke the body.
func (r *resumeBody) ended(ctx context.Context, cause error) error {
	if r.isClosed() {
		return errResumeClosed
	}
	return r.redact(fmt.Errorf("retry: the body broke after %d bytes: %w (%w)", r.n, contextError(ctx), cause))
}

// brokeErr is the error of a body that cannot be resumed, for why: it
// wraps cause (the read error that broke the body) and whatever else
// explains it.
func (r *resumeBody) brokeErr(why string, cause error, more ...error) error {
	errs := []any{r.n, why, cause}
	format := "retry: the body broke after %d bytes (%s): %w"
	for _, e := range more {
		if e != nil {
			format += " (%w)"
			errs = append(errs, e)
		}
	}
	return r.redact(fmt.Errorf(format, errs...))
}

// redact keeps the request URL's secrets out of err's text; errors.Is and
// errors.As still reach what it wraps.
func (r *resumeBody) redact(err error) error { return &redactedError{err: err, url: &r.u} }

// redactedError is an error whose text is redacted of a URL's secrets.
type redactedError struct {
	err error
	url *url.URL
}

func (e *redactedError) Error() string { return redactText(e.err.Error(), e.url) }
func (e *redactedError) Unwrap() error { return e.err }

// send sends the range request: the original request, at the next attempt
// number, with Range and If-Range.
func (r *resumeBody) send(ctx context.Context) (*http.Response, error) {
	req := r.req.Clone(ctx)
	req.Header.Set("Range", "bytes="+strconv.FormatInt(r.n, 10)+"-")
	req.Header.Set("If-Range", r.ifRange)
	req.Body, req.GetBody, req.ContentLength = nil, nil, 0
	rt := roundTrip{t: r.t, c: &r.cfg, req: req}
	return rt.send(ctx, r.n0+r.resumes, false)
}

// check returns why resp cannot carry the body on ("" when it can; "end"
// for a 416 that says the body had ended where it broke), and whether
// that is a mismatch (fatal) rather than a status to retry or report: the
// answer must be a 206 of the same representation starting at r.n, whose
// length is what it announces. A 206 that names the total of a body of
// unknown length sets it.
func (r *resumeBody) check(resp *http.Response) (why string, fatal bool) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusRequestedRangeNotSatisfiable:
		if cr := resp.Header.Get("Content-Range"); cr == "bytes */"+strconv.FormatInt(r.n, 10) && (r.total < 0 || r.total == r.n) {
			return "end", false
		}
		return "the server answered " + resp.Status + " to the range request", true
	case http.StatusOK:
		return "the server answered " + resp.Status + " to the range request (the resource changed, or it ignores ranges)", true
	default:
		return "the server answered " + resp.Status, false
	}
	if !identity(resp.Header) || resp.Uncompressed {
		return "the range came encoded (" + resp.Header.Get("Content-Encoding") + ")", true
	}
	if etag := resp.Header.Get("ETag"); r.etag != "" && etag != "" && etag != r.etag {
		return "the ETag changed from " + r.etag + " to " + etag, true
	}
	first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	switch {
	case !ok:
		return "unreadable Content-Range " + strconv.Quote(resp.Header.Get("Content-Range")), true
	case first != r.n:
		return fmt.Sprintf("the range starts at %d, not %d", first, r.n), true
	case resp.ContentLength >= 0 && resp.ContentLength != last-first+1:
		return fmt.Sprintf("the range %d-%d comes with %d bytes", first, last, resp.ContentLength), true
	case r.total >= 0 && (total != r.total || last != r.total-1):
		return fmt.Sprintf("the range is %d-%d/%d, the body %d bytes", first, last, total, r.total), true
	case r.total < 0 && total >= 0 && last != total-1:
		return fmt.Sprintf("the range %d-%d/%d stops short of the end", first, last, total), true
	}
	if r.total < 0 && total >= 0 {
		r.total = total
	}
	return "", false
}

// parseContentRange parses "bytes first-last/total" (total -1 for "*").
func parseContentRange(s string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total = -1
	if size != "*" {
		total, err3 = strconv.ParseInt(size, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// giveUp writes the give-up footprint and returns err.
func (r *resumeBody) giveUp(ctx context.Context, err error) error {
	r.tell(ctx, EventGiveUp, 0, err)
	return err
}

// tell writes the footprint of a resume (or of giving up on one).
func (r *resumeBody) tell(ctx context.Context, kind EventKind, d time.Duration, cause error) {
	c := &r.cfg
	ev := Event{Kind: kind, Name: c.name, Attempt: r.n0 + r.resumes, MaxAttempts: c.maxAttempts, Delay: d, Err: cause,
		Category: c.http.classify(nil, cause), RetryAfter: -1, Method: r.req.Method, URL: RedactURL(r.req.URL),
		ResumedAt: r.n, reqURL: r.req.URL}
	if ev.Method == "" {
		ev.Method = http.MethodGet
	}
	if ev.Name == "" {
		ev.Name = ev.Method + " " + ev.URL
	}
	c.emit(ctx, controllerTransport, &ev)
}
