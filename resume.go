package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// Accept-Ranges: bytes and a strong validator (a strong ETag, or else
// Last-Modified), whose body is sent as it is (no Content-Encoding other
// than identity, and not decompressed by net/http: resp.Uncompressed
// false), so that offsets are offsets of the bytes on the wire. Its body is
// wrapped; anything else is returned untouched.
//
// When a Read fails with an error worth retrying (a reset, an unexpected
// EOF, a timeout) before all of Content-Length (or, without one, a clean
// EOF) has arrived, the body waits the schedule's next delay, asks the
// retry budget, and sends the request again with Range: bytes=N- and
// If-Range: the validator, for the N bytes delivered so far, under the
// request's context and the Transport's options (attempt timeout, attempt
// header, WithPrepareRetry: a resume is an attempt); then it carries on
// reading from the new response. The caller sees one uninterrupted stream.
// A resume that fails in a way worth retrying (a 503, another reset) is
// tried again, each try counting as a resume.
//
// Only a 206 whose Content-Range starts exactly at N, with the same total
// length (and the same ETag, when it carries one) is accepted; anything
// else makes Read return an error wrapping ErrResumeMismatch, never bytes
// of another version. After maxResumes resumes, a denied budget, or an
// error not worth retrying, Read returns an error that wraps the read
// error that broke the body. A cancelled context ends a wait at once, with
// the context's error. Close closes whatever response is open, and stops a
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

	body    io.ReadCloser // the current response's
	n       int64         // bytes delivered to the caller
	total   int64         // the 200's Content-Length; -1: unknown
	etag    string        // the 200's strong ETag, or ""
	ifRange string        // the validator sent in If-Range
	n0      int           // attempts before the body
	resumes int
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
	case resp.Header.Get("Last-Modified") != "":
		etag, ifRange = "", resp.Header.Get("Last-Modified")
	default:
		return resp // no strong validator
	}
	resp.Body = &resumeBody{cfg: *c, t: t, req: req, body: resp.Body, total: resp.ContentLength,
		etag: etag, ifRange: ifRange, n0: attempts}
	return resp
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

// Read reads from the current response, resuming it when it breaks.
func (r *resumeBody) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
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
		case err == io.EOF && (r.total < 0 || r.n >= r.total):
			return n, io.EOF // all of it
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
// returns from then on.
func (r *resumeBody) resume(cause error) error {
	c := &r.cfg
	ctx := r.context()
	if ctx == nil {
		return errResumeClosed
	}
	if ctx.Err() != nil {
		return r.stop(ctx, fmt.Errorf("retry: reading the body: %w", contextError(ctx)), cause)
	}
	if !c.http.classify(nil, cause).Retryable() {
		return fmt.Errorf("retry: reading the body: %w", cause)
	}
	host := r.req.URL.Host
	for {
		if r.resumes >= c.http.maxResumes {
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, fmt.Errorf("retry: the body broke after %d bytes, %d resumes: %w", r.n, r.resumes, cause), cause)
		}
		r.resumes++
		d := c.next(r.resumes, r.prev, c.random())
		r.prev = d
		if !c.spendRetry(host) {
			c.metrics.resume(resumeFailed)
			return r.giveUp(ctx, fmt.Errorf("retry: the body broke after %d bytes: %w (%w)", r.n, cause, ErrBudgetExhausted), cause)
		}
		r.tell(ctx, EventResume, d, cause)
		if !sleep(ctx, d) {
			return r.stop(ctx, fmt.Errorf("retry: resuming the body: %w", contextError(ctx)), cause)
		}
		resp, err := r.send(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return r.stop(ctx, fmt.Errorf("retry: resuming the body: %w", contextError(ctx)), cause)
			}
			if !c.http.classify(nil, err).Retryable() {
				c.metrics.resume(resumeFailed)
				return r.giveUp(ctx, fmt.Errorf("retry: resuming the body after %d bytes: %w", r.n, err), err)
			}
			cause = err // a resume that broke too: try again
			continue
		}
		if why := r.check(resp); why != "" {
			if cat := c.http.classify(resp, nil); resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent &&
				resp.StatusCode != http.StatusRequestedRangeNotSatisfiable && cat.Retryable() {
				drainAndClose(resp) // a 503 or a 429: try again
				cause = &statusError{resp.Status}
				continue
			}
			_ = resp.Body.Close()
			c.metrics.resume(resumeMismatch)
			err := fmt.Errorf("%w after %d bytes: %s", ErrResumeMismatch, r.n, why)
			return r.giveUp(ctx, err, err)
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

// check returns why resp cannot carry the body on ("" when it can): it
// must be a 206 of the same representation starting at r.n.
func (r *resumeBody) check(resp *http.Response) string {
	if resp.StatusCode != http.StatusPartialContent {
		return "the server answered " + resp.Status + " to the range request"
	}
	if !identity(resp.Header) || resp.Uncompressed {
		return "the range came encoded (" + resp.Header.Get("Content-Encoding") + ")"
	}
	if etag := resp.Header.Get("ETag"); r.etag != "" && etag != "" && etag != r.etag {
		return "the ETag changed from " + r.etag + " to " + etag
	}
	first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	switch {
	case !ok:
		return "unreadable Content-Range " + strconv.Quote(resp.Header.Get("Content-Range"))
	case first != r.n:
		return fmt.Sprintf("the range starts at %d, not %d", first, r.n)
	case r.total >= 0 && (total != r.total || last != r.total-1):
		return fmt.Sprintf("the range is %d-%d/%d, the body %d bytes", first, last, total, r.total)
	}
	return ""
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
func (r *resumeBody) giveUp(ctx context.Context, err, cause error) error {
	r.tell(ctx, EventGiveUp, 0, cause)
	return err
}

// stop returns err for a body stopped by its context (or Close): no
// footprint, as for a request the caller gave up on.
func (r *resumeBody) stop(_ context.Context, err, _ error) error { return err }

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
