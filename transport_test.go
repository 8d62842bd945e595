package retry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
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

// send sends req once through a new Transport over base with the fast
// policy, then opts.
func send(t *testing.T, base http.RoundTripper, req *http.Request, opts ...Option) (*http.Response, error) {
	t.Helper()
	return NewTransport(base, slices.Concat(fast, opts)...).RoundTrip(req)
}

func TestTransportRetriesUntilSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503), respond(502), respond(200)}}
		resp, err := send(t, base, newReq(t, "GET", "http://svc/x", nil))
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
		resp, err := send(t, base, newReq(t, "GET", "http://svc/x", nil))
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
		resp, err := send(t, base, newReq(t, "GET", "http://svc/x", nil))
		assert.Nil(t, resp, "never a response and an error together")
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts)
		assert.Equal(t, DialError, re.Category)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	})
}

func TestTransportDoesNotRetryNonRetryable(t *testing.T) {
	certErr := errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")
	tests := []struct {
		name       string
		answer     reply // the base's every answer
		wantStatus int   // the status handed back; 0 when wantErr is
		wantErr    error // the error handed back as it is, or nil
	}{
		{"200", respond(200), 200, nil},
		{"301", respond(301), 301, nil},
		{"400", respond(400), 400, nil},
		{"404", respond(404), 404, nil},
		{"501", respond(501), 501, nil},
		{"505", respond(505), 505, nil},
		{"fatal error", fail(certErr), 0, certErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{tt.answer}}
				resp, err := send(t, base, newReq(t, "GET", "http://svc/x", nil))
				if tt.wantErr != nil {
					assert.Same(t, tt.wantErr, err, "a fatal error is returned as it is")
				} else {
					require.NoError(t, err)
					assert.Equal(t, tt.wantStatus, resp.StatusCode)
				}
				assert.Equal(t, 1, base.Calls())
			})
		})
	}
}

func TestTransportIdempotencyRules(t *testing.T) {
	connReset := fail(&url.Error{Op: "Post", URL: "http://svc", Err: syscall.ECONNRESET})
	dialErr := fail(syscall.ECONNREFUSED)
	tests := []struct {
		name    string
		method  string   // the request's method; its body is "payload"
		header  string   // a header set to "k-1", or ""
		opts    []Option // options after fast
		reply   reply    // the base's every answer
		retried bool     // whether all 3 attempts are made, or only 1
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
				_, _ = send(t, base, req, tt.opts...)
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
		_, err := send(t, base, req, WithAttemptHeader("X-Retry-Attempt"), WithAttemptTimeout(time.Minute))
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
		_, _ = send(t, base, newReq(t, "GET", "http://svc/", nil), WithAttemptHeader("x-retry-attempt"))
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
		body func() io.Reader // the request body, carrying payload
	}{
		{"GetBody", func() io.Reader { return strings.NewReader(payload) }},
		{"opaque, buffered", func() io.Reader { return &opaqueBody{Reader: strings.NewReader(payload)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{respond(503), fail(syscall.ECONNRESET), respond(200)}}
				req := newReq(t, "PUT", "http://svc/x", tt.body())
				resp, err := send(t, base, req)
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
	canceled := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx
	}
	tests := []struct {
		name   string
		script []reply                               // the base's answers
		opts   []Option                              // options after fast
		ctx    func(context.Context) context.Context // derives the request's context, if not nil
	}{
		{name: "success", script: []reply{respond(200)}},
		{name: "retried", script: []reply{respond(503), respond(200)}},
		{name: "exhausted", script: []reply{respond(503)}},
		{name: "error", script: []reply{fail(syscall.ECONNREFUSED)}},
		{name: "too large", script: []reply{respond(503)}, opts: []Option{WithMaxBufferedBody(10)}},
		{name: "buffer nothing", script: []reply{respond(503)}, opts: []Option{WithMaxBufferedBody(0)}},
		{name: "canceled first", script: []reply{respond(200)}, ctx: canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for _, getBody := range []bool{false, true} {
					body := &opaqueBody{Reader: strings.NewReader(strings.Repeat("x", 100))}
					req := newReq(t, "PUT", "http://svc/x", body)
					if getBody {
						req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), nil }
					}
					if tt.ctx != nil {
						req = req.WithContext(tt.ctx(req.Context()))
					}
					resp, _ := send(t, &fakeBase{script: tt.script}, req, tt.opts...)
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
	payload := strings.Repeat("y", 5000)
	tests := []struct {
		name          string
		contentLength int64 // the request's declared length; 0 for unknown
	}{
		// The first 1000 bytes are buffered, then sent with the rest.
		{"unknown length", 0},
		// A declared length above the limit is streamed without buffering.
		{"declared length", int64(len(payload))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{respond(503)}}
				req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(payload)})
				req.ContentLength = tt.contentLength
				resp, err := send(t, base, req, WithMaxBufferedBody(1000))
				require.NoError(t, err)
				assert.Equal(t, 503, resp.StatusCode, "that attempt's response, as it is")
				assert.Equal(t, 1, base.Calls(), "a body that cannot be replayed is not retried")
				assert.Equal(t, payload, string(base.bodies[0]), "sent whole")
			})
		})
	}
}

func TestTransportBodyErrors(t *testing.T) {
	broken := errors.New("disk on fire")
	reopenErr := errors.New("cannot reopen")
	tests := []struct {
		name      string
		req       func(t *testing.T) *http.Request // the request, made in the test's bubble
		script    []reply                          // the base's answers
		wantErr   error                            // an errors.Is target of the error, or nil
		wantText  string                           // in the error's text
		wantCalls int                              // attempts sent
	}{
		{
			name: "shorter than ContentLength",
			req: func(t *testing.T) *http.Request {
				req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("short")})
				req.ContentLength = 10
				return req
			},
			script:    []reply{respond(200)},
			wantText:  "has 5 bytes but ContentLength is 10",
			wantCalls: 0, // a truncated body is never sent
		},
		{
			name: "read error",
			req: func(t *testing.T) *http.Request {
				return newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(broken))})
			},
			script:    []reply{respond(200)},
			wantErr:   broken,
			wantCalls: 0,
		},
		{
			name: "GetBody error",
			req: func(t *testing.T) *http.Request {
				req := newReq(t, "PUT", "http://svc/x", strings.NewReader("abc"))
				req.GetBody = func() (io.ReadCloser, error) { return nil, reopenErr }
				return req
			},
			script:    []reply{respond(503)},
			wantErr:   reopenErr,
			wantText:  "GetBody for attempt 2",
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: tt.script}
				resp, err := send(t, base, tt.req(t))
				assert.Nil(t, resp, "never a response and an error together")
				require.Error(t, err)
				if tt.wantErr != nil {
					assert.ErrorIs(t, err, tt.wantErr)
				}
				assert.Contains(t, err.Error(), tt.wantText)
				assert.Equal(t, tt.wantCalls, base.Calls())
			})
		})
	}
}

func TestTransportRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		status     int             // the first answer's status; the second is a 200
		retryAfter string          // the first answer's Retry-After
		dateIn     time.Duration   // if not 0, Retry-After is instead an HTTP date this far ahead
		wantGaps   []time.Duration // the waits between attempts
		wantStatus int             // the status handed back
	}{
		// Longer than the backoff: it wins.
		{"longer than the backoff", 429, "5", 0, []time.Duration{5 * time.Second}, 200},
		// Shorter than the backoff: the backoff wins.
		{"shorter than the backoff", 503, "0", 0, []time.Duration{time.Second}, 200},
		{"HTTP date", 503, "", 7 * time.Second, []time.Duration{7 * time.Second}, 200},
		// Garbage: ignored, the backoff applies.
		{"garbage", 503, "-3", 0, []time.Duration{time.Second}, 200},
		// Longer than MaxDelay: no wait, no retry, that response at once.
		{"longer than MaxDelay", 503, "3600", 0, nil, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				retryAfter := tt.retryAfter
				if tt.dateIn != 0 {
					retryAfter = time.Now().Add(tt.dateIn).UTC().Format(http.TimeFormat)
				}
				base := &fakeBase{script: []reply{respond(tt.status, "Retry-After", retryAfter), respond(200)}}
				start := time.Now()
				resp, err := send(t, base, newReq(t, "GET", "http://svc/", nil))
				require.NoError(t, err)
				assert.Equal(t, tt.wantStatus, resp.StatusCode)
				assert.Equal(t, tt.wantGaps, base.gaps())
				assert.Equal(t, len(tt.wantGaps)+1, base.Calls())
				var waited time.Duration
				for _, g := range tt.wantGaps {
					waited += g
				}
				assert.Equal(t, waited, time.Since(start))
				assert.Zero(t, resp.Body.(*trackedBody).closes.Load(), "returned untouched")
			})
		})
	}
}

func TestTransportDeadlineRule(t *testing.T) {
	tests := []struct {
		name        string
		script      []reply       // the base's answers
		wantStatus  int           // the status handed back; 0 when an error is
		wantErrs    []error       // errors.Is targets of the error handed back
		wantCalls   int           // attempts sent
		wantElapsed time.Duration // when RoundTrip returns
	}{
		// The wait would pass the deadline: the last response at once.
		{"Retry-After past the deadline", []reply{respond(429, "Retry-After", "10"), respond(200)}, 429, nil, 1, 0},
		// A 1s wait fits in 2.5s, the next 2s wait does not.
		{"backoff past the deadline", []reply{fail(syscall.ECONNRESET)}, 0, []error{context.DeadlineExceeded, syscall.ECONNRESET}, 2, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
				defer cancel()
				base := &fakeBase{script: tt.script}
				start := time.Now()
				resp, err := send(t, base, newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
				if tt.wantErrs == nil {
					require.NoError(t, err)
					assert.Equal(t, tt.wantStatus, resp.StatusCode)
				}
				for _, target := range tt.wantErrs {
					assert.ErrorIs(t, err, target)
				}
				assert.Equal(t, tt.wantCalls, base.Calls())
				assert.Equal(t, tt.wantElapsed, time.Since(start))
				assert.NoError(t, ctx.Err(), "returned before the deadline")
			})
		})
	}
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
		resp, err := send(t, base, newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.Nil(t, resp)
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "returns as soon as the caller cancels")
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, int32(1), held.closes.Load(), "the held response is closed")
		assert.Contains(t, err.Error(), "503 Service Unavailable")
	})
}

func TestTransportCallerCancelIsNotRetried(t *testing.T) {
	tests := []struct {
		name           string
		callerCanceled bool  // the caller's context ends as the base fails with DeadlineExceeded
		wantCalls      int   // attempts sent
		wantErr        error // an errors.Is target of the error handed back; nil wants the 200
	}{
		// The error says "deadline exceeded", but it is the caller's context
		// that ended: that decides.
		{"caller's context ended", true, 1, context.DeadlineExceeded},
		// A DeadlineExceeded while the caller's context is live (a header
		// timeout of the base) is a retryable Timeout.
		{"caller's context live", false, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				base := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
					if tt.callerCanceled {
						cancel()
					}
					return nil, context.DeadlineExceeded
				}, respond(200)}}
				resp, err := send(t, base, newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
				assert.Equal(t, tt.wantCalls, base.Calls())
				if tt.wantErr != nil {
					assert.ErrorIs(t, err, tt.wantErr)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, 200, resp.StatusCode)
			})
		})
	}
}

func TestTransportAttemptTimeout(t *testing.T) {
	tests := []struct {
		name           string
		base           *slowBase     // the base, used by this row alone
		attemptTimeout time.Duration // WithAttemptTimeout
		callerTimeout  time.Duration // the caller's context's timeout; 0 for none
		wantRetried    []Category    // the categories of the attempts retried
		wantCalls      int           // attempts sent
		wantElapsed    time.Duration // when RoundTrip returns
		wantErr        error         // an errors.Is target; nil wants a 200 whose body is read whole
		wantCategory   Category      // the *Error's Category when wantErr is set
	}{
		{
			// A per-attempt timeout is retried; the third attempt's body
			// (256 KiB over 2.56s) outlives its 100ms timeout.
			name:           "retried, body outlives the timeout",
			base:           &slowBase{delays: []time.Duration{time.Hour, time.Hour, 10 * time.Millisecond}, chunks: 256, pause: 10 * time.Millisecond},
			attemptTimeout: 100 * time.Millisecond,
			wantRetried:    []Category{Timeout, Timeout},
			wantCalls:      3,
			wantElapsed:    3210 * time.Millisecond,
		},
		{
			// Attempts that all time out give up with a Timeout error that
			// is not context.Canceled.
			name:           "every attempt times out",
			base:           &slowBase{delays: []time.Duration{time.Hour}},
			attemptTimeout: time.Second,
			wantRetried:    []Category{Timeout, Timeout},
			wantCalls:      3,
			wantElapsed:    6 * time.Second,
			wantErr:        context.DeadlineExceeded,
			wantCategory:   Timeout,
		},
		{
			// The caller's deadline bounds the attempt when it is sooner,
			// and is not retried.
			name:           "caller's deadline sooner",
			base:           &slowBase{delays: []time.Duration{time.Hour}},
			attemptTimeout: time.Minute,
			callerTimeout:  300 * time.Millisecond,
			wantCalls:      1,
			wantElapsed:    300 * time.Millisecond,
			wantErr:        context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				if tt.callerTimeout != 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.callerTimeout)
					defer cancel()
				}
				var retried []Category
				onRetry := WithOnRetry(func(e Event) { retried = append(retried, e.Category) })
				start := time.Now()
				resp, err := send(t, tt.base, newReq(t, "GET", "http://svc/", nil).WithContext(ctx), WithAttemptTimeout(tt.attemptTimeout), onRetry)
				assert.Equal(t, tt.wantElapsed, time.Since(start))
				assert.Equal(t, tt.wantRetried, retried)
				assert.Equal(t, tt.wantCalls, tt.base.calls)
				assert.NotErrorIs(t, err, context.Canceled)
				if tt.wantErr != nil {
					assert.ErrorIs(t, err, tt.wantErr)
					if tt.wantCategory != Unknown {
						var re *Error
						require.ErrorAs(t, err, &re)
						assert.Equal(t, tt.wantCategory, re.Category)
					}
					return
				}
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.Equal(t, tt.base.chunks*1024, len(body), "the body arrives whole")
				require.NoError(t, resp.Body.Close())
			})
		})
	}
}

func TestTransportFootprintsRedact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, nil))
		base := &fakeBase{script: []reply{respond(503, "Retry-After", "2"), fail(&url.Error{Op: "Get", URL: "http://svc", Err: syscall.ECONNRESET})}}
		req := newReq(t, "GET", "http://alice:hunter2@svc:8080/v1/items?token=s3cr3t&page=7", nil)
		req.Header.Set("Authorization", "Bearer abcdef")
		req.Header.Set("Cookie", "session=cookieval")
		_, err := send(t, base, req, WithLogger(logger), WithLogTries(true))
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
		resp, err := send(t, base, newReq(t, "GET", "http://svc/", nil), WithClassifier(cls))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestTransportNilURL(t *testing.T) {
	body := &opaqueBody{Reader: strings.NewReader("x")}
	_, err := send(t, &fakeBase{}, &http.Request{Method: "PUT", Body: body})
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
		t.Run(bname, func(t *testing.T) {
			for oname, opts := range optionSets {
				t.Run(oname, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						req := mk(t)
						before := *req
						hdr := req.Header.Clone()
						base := &fakeBase{script: []reply{respond(503), respond(200)}}
						_, _ = send(t, base, req, opts...)
						assert.Equal(t, hdr, req.Header, "header")
						assert.Equal(t, before.Body, req.Body, "body")
						assert.Equal(t, before.GetBody == nil, req.GetBody == nil, "GetBody")
						assert.Equal(t, before.ContentLength, req.ContentLength, "ContentLength")
						assert.Equal(t, before.URL, req.URL, "URL")
						assert.Equal(t, before.Context(), req.Context(), "context")
					})
				})
			}
		})
	}
}

func TestTransportHoldsBaseToContract(t *testing.T) {
	stray := newTrackedBody(10)
	both := errors.New("also an error")
	tests := []struct {
		name    string
		script  []reply      // the base's answers
		stray   *trackedBody // a body the base hands back beside an error, or nil
		wantErr error        // an errors.Is target of the error handed back; nil wants a 200
	}{
		{
			name: "response and error",
			script: []reply{func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Body: stray}, both
			}},
			stray:   stray,
			wantErr: both,
		},
		{
			name:    "neither response nor error",
			script:  []reply{func(*http.Request) (*http.Response, error) { return nil, nil }},
			wantErr: errNilResponse,
		},
		{
			// A nil body is drained as an empty one.
			name: "response without a body",
			script: []reply{func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 503, Header: http.Header{}}, nil
			}, respond(200)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				resp, err := send(t, &fakeBase{script: tt.script}, newReq(t, "GET", "http://svc/", nil))
				if tt.stray != nil {
					assert.Equal(t, int32(1), tt.stray.closes.Load(), "the stray response is closed")
				}
				if tt.wantErr != nil {
					assert.Nil(t, resp, "never a response and an error together")
					assert.ErrorIs(t, err, tt.wantErr)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, 200, resp.StatusCode)
			})
		})
	}
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
