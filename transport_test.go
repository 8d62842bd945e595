package retry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newReq(t *testing.T, method, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, target, body)
	require.NoError(t, err)
	return req
}

// fast is the test policy: 3 attempts, 1s, 2s waits (instant under synctest).
var fast = []Option{WithSleepTime(time.Second), discard}

func TestTransportRetriesUntilSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503), respond(502), respond(200)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 3, base.Calls())
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, base.gaps())
	})
}

func TestTransportGivesBackLastResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*trackedBody
		base := &fakeBase{script: []reply{func(r *http.Request) (*http.Response, error) {
			b := newTrackedBody(1 << 20)
			bodies = append(bodies, b)
			return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: b}, nil
		}}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err, "a retryable status is returned as a response, not an error")
		assert.Equal(t, 503, resp.StatusCode)
		require.Len(t, bodies, 3)
		for _, b := range bodies[:2] {
			assert.Equal(t, int32(1), b.closes.Load(), "retried responses are closed")
			assert.Equal(t, int64(64<<10), b.read.Load(), "and drained up to 64 KiB, no more")
		}
		assert.Zero(t, bodies[2].read.Load(), "the returned body is untouched")
		assert.Zero(t, bodies[2].closes.Load())
		assert.Same(t, bodies[2], resp.Body)
	})
}

func TestTransportGivesUpOnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := &url.Error{Op: "Get", URL: "http://svc", Err: syscall.ECONNREFUSED}
		base := &fakeBase{script: []reply{fail(refused)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		assert.Nil(t, resp, "never a response and an error together")
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts)
		assert.Equal(t, DialError, re.Category)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	})
}

func TestTransportDoesNotRetryNonRetryable(t *testing.T) {
	for _, code := range []int{200, 301, 400, 404, 501, 505} {
		base := &fakeBase{script: []reply{respond(code)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/x", nil))
		require.NoError(t, err)
		assert.Equal(t, code, resp.StatusCode)
		assert.Equal(t, 1, base.Calls(), "status %d", code)
	}
	certErr := errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")
	base := &fakeBase{script: []reply{fail(certErr)}}
	_, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/x", nil))
	assert.Same(t, certErr, err, "a fatal error is returned as it is")
	assert.Equal(t, 1, base.Calls())
}

func TestTransportIdempotencyRules(t *testing.T) {
	connReset := fail(&url.Error{Op: "Post", URL: "http://svc", Err: syscall.ECONNRESET})
	dialErr := fail(syscall.ECONNREFUSED)
	tests := []struct {
		name    string
		method  string
		header  string
		opts    []Option
		reply   reply
		retried bool
	}{
		{"GET 500", "GET", "", nil, respond(500), true},
		{"HEAD 502", "HEAD", "", nil, respond(502), true},
		{"OPTIONS 504", "OPTIONS", "", nil, respond(504), true},
		{"TRACE 500", "TRACE", "", nil, respond(500), true},
		{"PUT reset", "PUT", "", nil, connReset, true},
		{"DELETE 500", "DELETE", "", nil, respond(500), true},
		{"POST 500", "POST", "", nil, respond(500), false},
		{"POST 502", "POST", "", nil, respond(502), false},
		{"POST 408", "POST", "", nil, respond(408), false},
		{"POST 425", "POST", "", nil, respond(425), false},
		{"POST reset", "POST", "", nil, connReset, false},
		{"PATCH 504", "PATCH", "", nil, respond(504), false},
		{"POST 503", "POST", "", nil, respond(503), true},
		{"POST 429", "POST", "", nil, respond(429), true},
		{"POST dial error", "POST", "", nil, dialErr, true},
		{"POST with Idempotency-Key", "POST", "Idempotency-Key", nil, respond(500), true},
		{"PATCH with X-Idempotency-Key", "PATCH", "X-Idempotency-Key", nil, connReset, true},
		{"POST with WithRetryNonIdempotent", "POST", "", []Option{WithRetryNonIdempotent(true)}, respond(500), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{tt.reply}}
				req := newReq(t, tt.method, "http://svc/x", strings.NewReader("payload"))
				if tt.header != "" {
					req.Header.Set(tt.header, "k-1")
				}
				_, _ = NewTransport(base, append(tt.opts, fast...)...).RoundTrip(req)
				want := 1
				if tt.retried {
					want = 3
				}
				assert.Equal(t, want, base.Calls())
			})
		})
	}
}

func TestTransportLeavesCallerRequestAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503), respond(200)}}
		req := newReq(t, "PUT", "http://u:p@svc/x?q=1", strings.NewReader("hello"))
		req.Header.Set("X-Custom", "1")
		origBody, origGetBody, origURL, origCtx := req.Body, req.GetBody, *req.URL, req.Context()
		_, err := NewTransport(base, append(fast, WithAttemptHeader("X-Retry-Attempt"), WithAttemptTimeout(time.Minute))...).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, http.Header{"X-Custom": {"1"}}, req.Header)
		assert.Equal(t, origURL, *req.URL)
		assert.Equal(t, origBody, req.Body)
		assert.NotNil(t, origGetBody)
		assert.Equal(t, origCtx, req.Context())
		for i, r := range base.reqs {
			assert.NotSame(t, req, r, "attempt %d is sent on a copy", i+1)
		}
	})
}

func TestTransportAttemptHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503)}}
		_, _ = NewTransport(base, append(fast, WithAttemptHeader("x-retry-attempt"))...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		var got []string
		for _, r := range base.reqs {
			got = append(got, r.Header.Get("X-Retry-Attempt"))
		}
		assert.Equal(t, []string{"1", "2", "3"}, got)
	})
}

func TestTransportBodyReplay(t *testing.T) {
	payload := strings.Repeat("0123456789", 1000)
	tests := []struct {
		name string
		body func() io.Reader
	}{
		{"GetBody", func() io.Reader { return strings.NewReader(payload) }},
		{"opaque, buffered", func() io.Reader { return &opaqueBody{Reader: strings.NewReader(payload)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{respond(503), fail(syscall.ECONNRESET), respond(200)}}
				req := newReq(t, "PUT", "http://svc/x", tt.body())
				resp, err := NewTransport(base, fast...).RoundTrip(req)
				require.NoError(t, err)
				assert.Equal(t, 200, resp.StatusCode)
				require.Len(t, base.bodies, 3)
				for i, b := range base.bodies {
					assert.Equal(t, payload, string(b), "attempt %d sends the whole body", i+1)
					assert.Equal(t, int64(len(payload)), base.reqs[i].ContentLength)
				}
			})
		})
	}
}

func TestTransportBodyClosedExactlyOnce(t *testing.T) {
	paths := map[string]struct {
		script []reply
		limit  int64
		ctx    func(context.Context) context.Context
	}{
		"success":        {script: []reply{respond(200)}},
		"retried":        {script: []reply{respond(503), respond(200)}},
		"exhausted":      {script: []reply{respond(503)}},
		"error":          {script: []reply{fail(syscall.ECONNREFUSED)}},
		"too large":      {script: []reply{respond(503)}, limit: 10},
		"buffer nothing": {script: []reply{respond(503)}, limit: 0},
		"canceled first": {script: []reply{respond(200)}, ctx: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		}},
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for _, getBody := range []bool{false, true} {
					body := &opaqueBody{Reader: strings.NewReader(strings.Repeat("x", 100))}
					req := newReq(t, "PUT", "http://svc/x", body)
					if getBody {
						req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), nil }
					}
					if p.ctx != nil {
						req = req.WithContext(p.ctx(req.Context()))
					}
					limit := int64(DefaultMaxBufferedBody)
					if name == "too large" || name == "buffer nothing" {
						limit = p.limit
					}
					base := &fakeBase{script: p.script}
					resp, _ := NewTransport(base, append(fast, WithMaxBufferedBody(limit))...).RoundTrip(req)
					if resp != nil {
						resp.Body.Close()
					}
					assert.Equal(t, int32(1), body.closes.Load(), "GetBody=%v", getBody)
				}
			})
		})
	}
}

func TestTransportOversizedBodySentOnceWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		payload := strings.Repeat("y", 5000)
		base := &fakeBase{script: []reply{respond(503)}}
		req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(payload)})
		resp, err := NewTransport(base, append(fast, WithMaxBufferedBody(1000))...).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode, "that attempt's response, as it is")
		assert.Equal(t, 1, base.Calls(), "a body that cannot be replayed is not retried")
		assert.Equal(t, payload, string(base.bodies[0]), "sent whole: the buffered part, then the rest")

		// A declared length above the limit is streamed without buffering.
		base = &fakeBase{script: []reply{respond(503)}}
		req = newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(payload)})
		req.ContentLength = int64(len(payload))
		_, _ = NewTransport(base, append(fast, WithMaxBufferedBody(1000))...).RoundTrip(req)
		assert.Equal(t, 1, base.Calls())
		assert.Equal(t, payload, string(base.bodies[0]))
	})
}

func TestTransportBodyErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(200)}}
		req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("short")})
		req.ContentLength = 10
		_, err := NewTransport(base, fast...).RoundTrip(req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "has 5 bytes but ContentLength is 10")
		assert.Zero(t, base.Calls(), "a truncated body is never sent")

		broken := errors.New("disk on fire")
		req = newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(broken))})
		_, err = NewTransport(base, fast...).RoundTrip(req)
		assert.ErrorIs(t, err, broken)
		assert.Zero(t, base.Calls())

		base = &fakeBase{script: []reply{respond(503)}}
		req = newReq(t, "PUT", "http://svc/x", strings.NewReader("abc"))
		gbErr := errors.New("cannot reopen")
		req.GetBody = func() (io.ReadCloser, error) { return nil, gbErr }
		resp, err := NewTransport(base, fast...).RoundTrip(req)
		assert.Nil(t, resp)
		assert.ErrorIs(t, err, gbErr)
		assert.Contains(t, err.Error(), "GetBody for attempt 2")
		assert.Equal(t, 1, base.Calls())
	})
}

func TestTransportRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Retry-After longer than the backoff: it wins.
		base := &fakeBase{script: []reply{respond(429, "Retry-After", "5"), respond(200)}}
		_, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{5 * time.Second}, base.gaps())

		// Shorter than the backoff: the backoff wins.
		base = &fakeBase{script: []reply{respond(503, "Retry-After", "0"), respond(200)}}
		_, _ = NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Equal(t, []time.Duration{time.Second}, base.gaps())

		// An HTTP date.
		date := time.Now().Add(7 * time.Second).UTC().Format(http.TimeFormat)
		base = &fakeBase{script: []reply{respond(503, "Retry-After", date), respond(200)}}
		_, _ = NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Equal(t, []time.Duration{7 * time.Second}, base.gaps())

		// Garbage: ignored, the backoff applies.
		base = &fakeBase{script: []reply{respond(503, "Retry-After", "-3"), respond(200)}}
		_, _ = NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Equal(t, []time.Duration{time.Second}, base.gaps())

		// Longer than MaxDelay: no wait, no retry, that response at once.
		start := time.Now()
		base = &fakeBase{script: []reply{respond(503, "Retry-After", "3600"), respond(200)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1, base.Calls())
		assert.Zero(t, time.Since(start))
		assert.Zero(t, resp.Body.(*trackedBody).closes.Load(), "returned untouched")
	})
}

func TestTransportDeadlineRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		base := &fakeBase{script: []reply{respond(429, "Retry-After", "10"), respond(200)}}
		start := time.Now()
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		require.NoError(t, err)
		assert.Equal(t, 429, resp.StatusCode, "the wait would pass the deadline: the last response at once")
		assert.Zero(t, time.Since(start))

		base = &fakeBase{script: []reply{fail(syscall.ECONNRESET)}}
		_, err = NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		assert.Equal(t, 2, base.Calls(), "a 1s wait fits in 2.5s, the next 2s wait does not")
		assert.NoError(t, ctx.Err(), "returned before the deadline")
	})
}

func TestTransportCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		var held *trackedBody
		base := &fakeBase{script: []reply{func(r *http.Request) (*http.Response, error) {
			held = newTrackedBody(10)
			return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: held}, nil
		}}}
		start := time.Now()
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.Nil(t, resp)
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "returns as soon as the caller cancels")
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, int32(1), held.closes.Load(), "the held response is closed")
		assert.Contains(t, err.Error(), "503 Service Unavailable")
	})
}

func TestTransportCallerCancelIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		// The error says "deadline exceeded", but it is the caller's context
		// that ended: that decides.
		base := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
			cancel()
			return nil, context.DeadlineExceeded
		}}}
		_, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.Equal(t, 1, base.Calls())
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		// A DeadlineExceeded while the caller's context is live (a header
		// timeout of the base) is a retryable Timeout.
		base = &fakeBase{script: []reply{fail(context.DeadlineExceeded), respond(200)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestTransportAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowBase{delays: []time.Duration{time.Hour, time.Hour, 10 * time.Millisecond}, chunks: 256, pause: 10 * time.Millisecond}
		var cats []Category
		tr := NewTransport(base, append(fast, WithAttemptTimeout(100*time.Millisecond),
			WithOnRetry(func(e Event) { cats = append(cats, e.Category) }))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, []Category{Timeout, Timeout}, cats, "a per-attempt timeout is retried")
		// 256 KiB read over 2.56s, long after the 100ms attempt timeout.
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, 256*1024, len(body), "the body arrives whole")
		require.NoError(t, resp.Body.Close())

		// Attempts that all time out give up with a Timeout error that is
		// not context.Canceled.
		base = &slowBase{delays: []time.Duration{time.Hour}}
		_, err = NewTransport(base, append(fast, WithAttemptTimeout(time.Second))...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, Timeout, re.Category)
		assert.Equal(t, 3, base.calls)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, context.Canceled)

		// The caller's deadline bounds the attempt when it is sooner.
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		base = &slowBase{delays: []time.Duration{time.Hour}}
		start := time.Now()
		_, err = NewTransport(base, append(fast, WithAttemptTimeout(time.Minute))...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.Equal(t, 300*time.Millisecond, time.Since(start))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 1, base.calls, "the caller's deadline is not retried")
	})
}

func TestTransportFootprintsRedact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, nil))
		base := &fakeBase{script: []reply{respond(503, "Retry-After", "2"), fail(&url.Error{Op: "Get", URL: "http://svc", Err: syscall.ECONNRESET})}}
		req := newReq(t, "GET", "http://alice:hunter2@svc:8080/v1/items?token=s3cr3t&page=7", nil)
		req.Header.Set("Authorization", "Bearer abcdef")
		req.Header.Set("Cookie", "session=cookieval")
		_, err := NewTransport(base, WithSleepTime(time.Second), WithLogger(logger), WithLogTries(true)).RoundTrip(req)
		require.Error(t, err)
		out := buf.String()
		for _, secret := range []string{"alice", "hunter2", "s3cr3t", "abcdef", "cookieval"} {
			assert.NotContains(t, out, secret)
			assert.NotContains(t, err.Error(), secret)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 3)
		assert.Contains(t, lines[0], `"msg":"An error happened while we retry to run GET http://svc:8080/v1/items?token=REDACTED&page=REDACTED at the 1 attempt."`)
		assert.Contains(t, lines[0], `"controller":"retry.Transport"`)
		assert.Contains(t, lines[0], `"method":"GET","url":"http://svc:8080/v1/items?token=REDACTED&page=REDACTED","status":503,"category":"server_error","retry_after":2`)
		assert.Contains(t, lines[1], `"status":0,"category":"connection_error","retry_after":-1`)
		assert.Contains(t, lines[2], `"level":"ERROR"`)
	})
}

func TestNewTransportPanicsOnInvalidOption(t *testing.T) {
	assert.PanicsWithValue(t, "retry: invalid option: WithMaxAttempts(0): must be at least 1", func() {
		NewTransport(nil, WithMaxAttempts(0))
	})
	assert.Panics(t, func() { NewClient(WithAttemptHeader("bad header")) })
	assert.Panics(t, func() { NewClient(WithMaxBufferedBody(-1)) })
	assert.Panics(t, func() { NewClient(WithAttemptTimeout(-time.Second)) })
	assert.Panics(t, func() { NewClient(WithClassifier(nil)) })
}

func TestTransportCustomClassifier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Treat 404 as retryable (say, eventual consistency after a write).
		cls := func(resp *http.Response, err error) Category {
			if resp != nil && resp.StatusCode == 404 {
				return ServerError
			}
			return Classify(resp, err)
		}
		base := &fakeBase{script: []reply{respond(404), respond(200)}}
		resp, err := NewTransport(base, append(fast, WithClassifier(cls))...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestTransportNilURL(t *testing.T) {
	body := &opaqueBody{Reader: strings.NewReader("x")}
	_, err := NewTransport(&fakeBase{}).RoundTrip(&http.Request{Method: "PUT", Body: body})
	require.Error(t, err)
	assert.Equal(t, int32(1), body.closes.Load())
}

func TestTransportLeavesCallerRequestAloneInEveryBodyMode(t *testing.T) {
	bodies := map[string]func(t *testing.T) *http.Request{
		"none":    func(t *testing.T) *http.Request { return newReq(t, "GET", "http://svc/x", nil) },
		"GetBody": func(t *testing.T) *http.Request { return newReq(t, "PUT", "http://svc/x", strings.NewReader("abc")) },
		"opaque": func(t *testing.T) *http.Request {
			return newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("abc")})
		},
		"too large": func(t *testing.T) *http.Request {
			r := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(strings.Repeat("z", 64))})
			r.ContentLength = 64
			return r
		},
	}
	optionSets := map[string][]Option{
		"no options":               nil,
		"attempt header":           {WithAttemptHeader("X-Attempt")},
		"attempt timeout":          {WithAttemptTimeout(time.Minute)},
		"small buffer and timeout": {WithMaxBufferedBody(16), WithAttemptTimeout(time.Minute)},
	}
	for bname, mk := range bodies {
		for oname, opts := range optionSets {
			synctest.Test(t, func(t *testing.T) {
				req := mk(t)
				before := *req
				hdr := req.Header.Clone()
				base := &fakeBase{script: []reply{respond(503), respond(200)}}
				_, _ = NewTransport(base, append(append([]Option{}, fast...), opts...)...).RoundTrip(req)
				assert.Equal(t, hdr, req.Header, "%s, %s: header", bname, oname)
				assert.Equal(t, before.Body, req.Body, "%s, %s: body", bname, oname)
				assert.Equal(t, before.GetBody == nil, req.GetBody == nil, "%s, %s: GetBody", bname, oname)
				assert.Equal(t, before.ContentLength, req.ContentLength, "%s, %s: ContentLength", bname, oname)
				assert.Equal(t, before.URL, req.URL, "%s, %s: URL", bname, oname)
				assert.Equal(t, before.Context(), req.Context(), "%s, %s: context", bname, oname)
			})
		}
	}
}

func TestTransportHoldsBaseToContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := newTrackedBody(10)
		both := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: body}, errors.New("also an error")
		}}}
		resp, err := NewTransport(both, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Nil(t, resp, "never a response and an error together")
		assert.Error(t, err)
		assert.Equal(t, int32(1), body.closes.Load(), "the stray response is closed")

		neither := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) { return nil, nil }}}
		resp, err = NewTransport(neither, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Nil(t, resp)
		assert.ErrorIs(t, err, errNilResponse)

		noBody := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 503, Header: http.Header{}}, nil
		}, respond(200)}}
		resp, err = NewTransport(noBody, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err, "a nil body is drained as an empty one")
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestCancelOnCloseKeepsWriter(t *testing.T) {
	canceled := false
	inner := &rwBody{Reader: strings.NewReader("up")}
	body := cancelOnClose(inner, func() { canceled = true })
	w, ok := body.(io.Writer)
	require.True(t, ok, "a 101 response body stays writable")
	_, _ = w.Write([]byte("hi"))
	got, _ := io.ReadAll(body)
	require.NoError(t, body.Close())
	assert.Equal(t, "hi", inner.written.String())
	assert.Equal(t, "up", string(got))
	assert.True(t, inner.closed)
	assert.True(t, canceled, "closing releases the attempt's context")

	plain := cancelOnClose(io.NopCloser(strings.NewReader("x")), func() {})
	_, isWriter := plain.(io.Writer)
	assert.False(t, isWriter)
}
