package retry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

func TestRequestOptionsTransport(t *testing.T) {
	cases := []struct {
		name  string
		opts  [][]Option // one WithRequestOptions call per element, nested
		calls int
	}{
		{"none", nil, 3},
		{"fewer attempts", [][]Option{{WithMaxAttempts(1)}}, 1},
		{"more attempts", [][]Option{{WithMaxAttempts(6)}}, 6},
		{"a derived context adds", [][]Option{{WithMaxAttempts(6)}, {WithMaxAttempts(2)}}, 2},
		{"a derived context keeps the earlier ones", [][]Option{{WithMaxAttempts(5)}, {WithLogTries(true)}}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{respond(503)}}
				tr := NewTransport(base, append(fast, WithBudget(nil))...)
				ctx := t.Context()
				for _, o := range c.opts {
					ctx = WithRequestOptions(ctx, o...)
				}
				resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
				require.NoError(t, err)
				assert.Equal(t, 503, resp.StatusCode)
				assert.Equal(t, c.calls, base.Calls())
			})
		})
	}
}

func TestRequestOptionsDoNotLeakToOtherRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503)}}
		tr := NewTransport(base, append(fast, WithBudget(nil))...)
		one := WithRequestOptions(t.Context(), WithMaxAttempts(1))
		_, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(one))
		require.NoError(t, err)
		_, err = tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 1+3, base.Calls(), "the second request has the Transport's 3 attempts")
	})
}

func TestRequestOptionsInvalid(t *testing.T) {
	base := &fakeBase{script: []reply{respond(200)}}
	body := &opaqueBody{Reader: strings.NewReader("payload")}
	req := newReq(t, "PUT", "http://svc/", nil)
	req.Body = body
	ctx := WithRequestOptions(t.Context(), WithSleepTime(-time.Second))
	resp, err := NewTransport(base).RoundTrip(req.WithContext(ctx))
	assert.Nil(t, resp)
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "WithSleepTime(-1s)")
	assert.Zero(t, base.Calls(), "nothing is sent")
	assert.Equal(t, int32(1), body.closes.Load(), "the body is closed")

	called := false
	_, err = Do(ctx, func(context.Context) (int, error) { called = true; return 1, nil })
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.False(t, called, "Do does not call fn")
	_, err = Wrap(func(context.Context) (int, error) { called = true; return 1, nil })(ctx)
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.False(t, called)
}

func TestRequestOptionsDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{failures: 10}
		ctx := WithRequestOptions(t.Context(), WithMaxAttempts(5))
		_, err := Do(ctx, r.fn, fast...)
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 5, re.Attempts)

		r = &recorder{failures: 10}
		_, err = Wrap(r.fn, fast...)(ctx)
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 5, re.Attempts, "Wrap applies them per call")
		r = &recorder{failures: 10}
		_, err = Wrap(r.fn, fast...)(t.Context())
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts, "and not to calls without them")

		r = &recorder{failures: 10}
		err = DoErr(ctx, func(ctx context.Context) error { _, err := r.fn(ctx); return err }, fast...)
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 5, re.Attempts)
	})
}

// Per-request options through a real http.Client, concurrently with
// requests that carry none, and a per-request metrics name.
func TestRequestOptionsThroughClient(t *testing.T) {
	srv := h.NewServer(t, h.Status(503))
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	client := &http.Client{Transport: NewTransport(srv.Transport(), append(quick, WithBudget(nil), WithMetrics(m), WithName("api"))...)}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ctx := t.Context()
			if i%2 == 0 {
				ctx = WithRequestOptions(ctx, WithMaxAttempts(1), WithName("api-once"))
			}
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			if assert.NoError(t, err) {
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 4*1+4*3, srv.Hits())
	assert.Equal(t, 4.0, testutil.ToFloat64(m.attempts.WithLabelValues("api-once", "GET", "server_error")))
	assert.Equal(t, 12.0, testutil.ToFloat64(m.attempts.WithLabelValues("api", "GET", "server_error")))
}

func TestPrepareRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{respond(503), respond(503), respond(200)}}
		var seen []*http.Request
		sign := func(r *http.Request) error {
			seen = append(seen, r)
			r.Header.Set("X-Signature", "sig-"+time.Now().Format(time.RFC3339Nano))
			r.Header.Set("Authorization", "Bearer fresh")
			q := r.URL.Query()
			q.Set("ts", time.Now().Format("150405"))
			r.URL.RawQuery = q.Encode()
			if r.GetBody != nil {
				b, err := r.GetBody()
				if err != nil {
					return err
				}
				data, _ := io.ReadAll(b)
				_ = b.Close()
				r.Header.Set("X-Body", string(data))
			}
			return nil
		}
		req := newReq(t, "PUT", "http://svc/p?a=1", strings.NewReader("payload"))
		req.Header.Set("Authorization", "Bearer stale")
		resp, err := NewTransport(base, append(fast, WithPrepareRetry(sign))...).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		require.Len(t, seen, 2, "called for attempts 2 and 3, never for the first")
		for _, r := range seen {
			assert.NotSame(t, req, r, "never the caller's request")
		}
		assert.Equal(t, "Bearer stale", base.reqs[0].Header.Get("Authorization"))
		for i := 1; i < 3; i++ {
			assert.Equal(t, "Bearer fresh", base.reqs[i].Header.Get("Authorization"), "attempt %d", i+1)
			assert.NotEmpty(t, base.reqs[i].URL.Query().Get("ts"))
			assert.Equal(t, "payload", base.reqs[i].Header.Get("X-Body"), "GetBody gives the body to hash")
			assert.Equal(t, "payload", string(base.bodies[i]), "and the body is still sent whole")
		}
		assert.NotEqual(t, base.reqs[1].Header.Get("X-Signature"), base.reqs[2].Header.Get("X-Signature"), "signed anew each time")
		// The caller's request is as it was.
		assert.Equal(t, "Bearer stale", req.Header.Get("Authorization"))
		assert.Empty(t, req.Header.Get("X-Signature"))
		assert.Equal(t, "a=1", req.URL.RawQuery)
	})
}

func TestPrepareRetryError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errNoToken := errors.New("token service down")
		base := &fakeBase{script: []reply{respond(503)}}
		resp, err := NewTransport(base, append(fast, WithPrepareRetry(func(*http.Request) error { return errNoToken }))...).
			RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Nil(t, resp)
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.ErrorIs(t, err, errNoToken)
		assert.Equal(t, 1, re.Attempts, "one attempt was sent")
		assert.Equal(t, 1, base.Calls(), "the loop stops")
	})
}

func TestPrepareRetryThroughClient(t *testing.T) {
	srv := h.NewServer(t, h.Status(503), h.Status(200).Body("ok"))
	n := 0
	client := &http.Client{Transport: NewTransport(srv.Transport(), append(quick, WithPrepareRetry(func(r *http.Request) error {
		n++
		r.Header.Set("X-Attempt-Signature", "resigned")
		return nil
	}))...)}
	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 1, n)
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	assert.Empty(t, reqs[0].Header.Get("X-Attempt-Signature"))
	assert.Equal(t, "resigned", reqs[1].Header.Get("X-Attempt-Signature"))
	assert.Equal(t, "body", string(reqs[1].Body))
}

func TestDoRetryAfter(t *testing.T) {
	cases := []struct {
		name     string
		d        time.Duration
		deadline time.Duration // 0: none
		attempts int
		gaps     []time.Duration
	}{
		{"longer than the backoff", 5 * time.Second, 0, 3, []time.Duration{5 * time.Second, 5 * time.Second}},
		{"shorter than the backoff", 10 * time.Millisecond, 0, 3, []time.Duration{time.Second, 2 * time.Second}},
		{"above the max delay", time.Hour, 0, 1, nil},
		{"past the deadline", 5 * time.Second, 3 * time.Second, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				if c.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.deadline)
					defer cancel()
				}
				r := &recorder{failures: 10}
				fn := func(ctx context.Context) (int, error) {
					_, err := r.fn(ctx)
					return 0, RetryAfter(c.d, err)
				}
				_, err := Do(ctx, fn, fast...)
				var re *Error
				require.ErrorAs(t, err, &re)
				assert.ErrorIs(t, err, errFlaky)
				assert.Equal(t, c.attempts, re.Attempts)
				assert.Equal(t, c.gaps, r.gaps())
			})
		})
	}
	assert.NoError(t, RetryAfter(time.Second, nil))
}

// A retryable failure that is not retried names its reason, next to the
// original error, and a footprint says so.
func TestNotRetriedSaysWhy(t *testing.T) {
	cases := []struct {
		name   string
		method string
		body   io.Reader
		opts   []Option
		reason error
		text   string
	}{
		{"not idempotent", "POST", strings.NewReader("x"), nil, ErrNotIdempotent, "not idempotent"},
		{"body not replayable", "PUT", &opaqueBody{Reader: strings.NewReader(strings.Repeat("x", 64))}, []Option{WithMaxBufferedBody(8)}, ErrNotReplayable, "cannot be sent again"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				base := &fakeBase{script: []reply{fail(&url.Error{Op: "Put", URL: "http://svc/", Err: syscall.ECONNRESET})}}
				opts := append([]Option{WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))}, c.opts...)
				_, err := NewTransport(base, append(fast, opts...)...).RoundTrip(newReq(t, c.method, "http://svc/", c.body))
				require.Error(t, err)
				assert.Equal(t, 1, base.Calls())
				assert.ErrorIs(t, err, c.reason)
				assert.ErrorIs(t, err, syscall.ECONNRESET, "the original error is still reachable")
				assert.Contains(t, err.Error(), c.text)
				var rec struct {
					Level string `json:"level"`
					Msg   string `json:"msg"`
				}
				require.NoError(t, json.Unmarshal(logs.Bytes(), &rec), logs.String())
				assert.Equal(t, "WARN", rec.Level)
				assert.Contains(t, rec.Msg, c.text)
			})
		})
	}
}

// Do counts nothing in the HTTP metrics, even when the context's options
// name a metrics client (the same context often reaches an SDK's requests
// and an outer Do).
func TestRequestOptionsDoCountsNoMetrics(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	ctx := WithRequestOptions(t.Context(), WithMetrics(m), WithName("sdk"))
	_, err = Do(ctx, func(context.Context) (int, error) { return 1, nil })
	require.NoError(t, err)
	_, err = Wrap(func(context.Context) (int, error) { return 1, nil }, WithMetrics(m))(ctx)
	require.NoError(t, err)
	err = DoErr(ctx, func(context.Context) error { return nil }, WithMetrics(m))
	require.NoError(t, err)
	assert.Zero(t, testutil.CollectAndCount(m.requests))
	assert.Zero(t, testutil.CollectAndCount(m.attempts))
}
