package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

// cloningBase hands the base a copy of each request, as instrumenting
// middleware does, so that resp.Request is that copy and not the request
// the Transport made.
type cloningBase struct{ base http.RoundTripper }

func (c cloningBase) RoundTrip(r *http.Request) (*http.Response, error) {
	return c.base.RoundTrip(r.Clone(r.Context()))
}

// checkGetBody calls req.GetBody, as a caller holding the response might
// after RoundTrip returned: it must give want or an error, never other
// bytes.
func checkGetBody(t *testing.T, req *http.Request, want string) {
	t.Helper()
	if req.GetBody == nil {
		return
	}
	rc, err := req.GetBody()
	if err != nil {
		assert.Contains(t, err.Error(), "retry:")
		return
	}
	got, _ := io.ReadAll(rc)
	_ = rc.Close()
	require.True(t, want == string(got), "GetBody of a returned request gives %d bytes, not that request's %d", len(got), len(want))
}

func TestBodyGetBodyAfterRoundTrip(t *testing.T) {
	bases := map[string]func(*fakeBase) http.RoundTripper{
		"plain":   func(f *fakeBase) http.RoundTripper { return f },
		"cloning": func(f *fakeBase) http.RoundTripper { return cloningBase{f} },
	}
	for name, wrap := range bases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for i := range 200 {
					payload := fmt.Sprintf("payload-%d", i)
					var hooked []*http.Request
					tr := NewTransport(wrap(&fakeBase{script: []reply{respond(503), respond(200)}}),
						append(fast, WithOnRetry(func(ev Event) { hooked = append(hooked, ev.Response.Request) }))...)
					req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(payload)})
					resp, err := tr.RoundTrip(req)
					require.NoError(t, err)
					require.NoError(t, resp.Body.Close())
					checkGetBody(t, resp.Request, payload)
					for _, r := range hooked {
						checkGetBody(t, r, payload)
					}

					// Neither GetBody above may have put a buffer back twice.
					a, b := getBodyBuffer(), getBodyBuffer()
					require.NotSame(t, a, b, "loop %d: the pool gave out one buffer twice", i)
					a.unref()
					b.unref()
				}
			})
		})
	}
}

func TestBodyGetBodyDuringRetryHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		tr := NewTransport(&fakeBase{script: []reply{respond(503), respond(200)}},
			append(fast, WithOnRetry(func(ev Event) {
				rc, err := ev.Response.Request.GetBody()
				require.NoError(t, err, "while RoundTrip runs, GetBody works")
				b, _ := io.ReadAll(rc)
				_ = rc.Close()
				got = append(got, string(b))
			}))...)
		req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("payload-A")})
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, []string{"payload-A"}, got)
	})
}

func TestLoopbackGetBodyAfterRoundTrip(t *testing.T) {
	payload := strings.Repeat("payload-A", 100)
	early := h.Func(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })
	servers := map[string]*h.Server{
		"HTTP/1.1": h.NewServer(t, early, h.Status(200).Body("ok")),
		"HTTP/2":   h.NewHTTP2Server(t, early, h.Status(200).Body("ok")),
	}
	for name, srv := range servers {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: NewTransport(srv.Transport(), quick...)}
			for range 20 {
				req := newReq(t, "PUT", srv.URL, &opaqueBody{Reader: strings.NewReader(payload)})
				resp, err := client.Do(req)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, 200, resp.StatusCode)
				checkGetBody(t, resp.Request, payload)
			}
		})
	}
}

// trickle is a body that gives 1 KiB every 20 ms.
type trickle struct{ left int }

func (r *trickle) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(20 * time.Millisecond)
	n := min(len(p), 1024, r.left)
	r.left -= n
	return n, nil
}

func TestBodyBufferingStopsWhenContextEnds(t *testing.T) {
	cause := errors.New("the caller's deadline")
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := &fakeBase{script: []reply{respond(200)}}
			body := &opaqueBody{Reader: &trickle{left: 1 << 20}}
			ctx, cancel := context.WithTimeoutCause(t.Context(), 200*time.Millisecond, cause)
			defer cancel()
			req := newReq(t, "PUT", "http://svc/x", body).WithContext(ctx)
			start := time.Now()
			resp, err := NewTransport(base, fast...).RoundTrip(req)
			assert.Nil(t, resp)
			assert.LessOrEqual(t, time.Since(start), 220*time.Millisecond, "buffering stops at the deadline")
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.ErrorIs(t, err, cause)
			assert.Zero(t, base.Calls(), "nothing is sent")
			assert.Equal(t, int32(1), body.closes.Load())
		})
	})
	t.Run("Client.Timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := &fakeBase{script: []reply{respond(200)}}
			client := &http.Client{Transport: NewTransport(base, fast...), Timeout: 200 * time.Millisecond}
			req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: &trickle{left: 1 << 20}})
			start := time.Now()
			_, err := client.Do(req)
			assert.LessOrEqual(t, time.Since(start), 220*time.Millisecond)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Zero(t, base.Calls())
		})
	})
	t.Run("already done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			body := &trackedBody{r: strings.NewReader("abc")}
			ctx, cancel := context.WithCancelCause(t.Context())
			cancel(cause)
			req := newReq(t, "PUT", "http://svc/x", nil).WithContext(ctx)
			req.Body = body
			_, err := NewTransport(&fakeBase{script: []reply{respond(200)}}, fast...).RoundTrip(req)
			assert.ErrorIs(t, err, context.Canceled)
			assert.ErrorIs(t, err, cause)
			assert.Zero(t, body.read.Load(), "a done context reads nothing")
			assert.Equal(t, int32(1), body.closes.Load())
		})
	})
}

// replayCase runs one opaque PUT of payload against 503-then-200 and
// checks that it was buffered and replayed (want 2 attempts) or sent once,
// whole (want 1).
func replayCase(t *testing.T, limit int64, body io.Reader, contentLength int64, payload string, attempts int) {
	t.Helper()
	base := &fakeBase{script: []reply{respond(503), respond(200)}}
	req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: body})
	req.ContentLength = contentLength
	var resp *http.Response
	var err error
	require.NotPanics(t, func() {
		resp, err = NewTransport(base, append(fast, WithMaxBufferedBody(limit))...).RoundTrip(req)
	})
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, attempts, base.Calls(), "limit %d, %d bytes", limit, len(payload))
	for i, b := range base.bodies {
		assert.Equal(t, payload, string(b), "attempt %d sends the whole body", i+1)
	}
}

func TestBodyLimitBoundaries(t *testing.T) {
	for _, limit := range []int64{0, 1, math.MaxInt64 - 1, math.MaxInt64} {
		for _, size := range []int{0, 1, 2, 100} {
			t.Run(fmt.Sprintf("limit=%d/size=%d", limit, size), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					payload := strings.Repeat("z", size)
					attempts := 2
					if int64(size) > limit || limit == 0 {
						attempts = 1 // 0 buffers nothing, not even an empty body
					}
					replayCase(t, limit, strings.NewReader(payload), 0, payload, attempts)
					replayCase(t, limit, strings.NewReader(payload), int64(size), payload, attempts)
				})
			})
		}
	}
	t.Run("0 reads nothing ahead", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var readBeforeSend bool
			sent := false
			body := &opaqueBody{Reader: readFunc(func(p []byte) (int, error) {
				if !sent {
					readBeforeSend = true
				}
				return 0, io.EOF
			})}
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent = true
				_, _ = io.ReadAll(r.Body)
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
			})
			req := newReq(t, "PUT", "http://svc/x", nil)
			req.Body = body
			_, err := NewTransport(base, append(fast, WithMaxBufferedBody(0))...).RoundTrip(req)
			require.NoError(t, err)
			assert.False(t, readBeforeSend, "the body is read only as it is sent")
		})
	})
	t.Run("ContentLength near the limit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			for _, tc := range []struct{ limit, cl int64 }{
				{math.MaxInt64, math.MaxInt64},
				{math.MaxInt64, math.MaxInt64 - 1},
				{math.MaxInt64 - 1, math.MaxInt64 - 1},
				{1 << 40, 1 << 40},
			} {
				base := &fakeBase{script: []reply{respond(200)}}
				req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("abc")})
				req.ContentLength = tc.cl
				var err error
				require.NotPanics(t, func() {
					_, err = NewTransport(base, append(fast, WithMaxBufferedBody(tc.limit))...).RoundTrip(req)
				}, "limit %d, ContentLength %d", tc.limit, tc.cl)
				require.Error(t, err, "a body shorter than its ContentLength is never sent")
				assert.Contains(t, err.Error(), "has 3 bytes but ContentLength is")
				assert.Zero(t, base.Calls())
			}
			// Declared one over the limit: streamed, unread, once.
			replayCase(t, 1<<40, strings.NewReader("abc"), 1<<40+1, "abc", 1)
		})
	})
}

func TestBodyLimitIsExactOnEveryReader(t *testing.T) {
	const limit = 16
	shapes := map[string]func(io.Reader) io.Reader{
		"plain":         func(r io.Reader) io.Reader { return r },
		"DataErrReader": iotest.DataErrReader,
		"OneByteReader": iotest.OneByteReader,
		"HalfReader":    iotest.HalfReader,
	}
	for name, shape := range shapes {
		for _, size := range []int{limit - 1, limit, limit + 1} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					payload := strings.Repeat("q", size)
					attempts := 2
					if size > limit {
						attempts = 1
					}
					replayCase(t, limit, shape(strings.NewReader(payload)), 0, payload, attempts)
					replayCase(t, limit, shape(strings.NewReader(payload)), int64(size), payload, attempts)
				})
			})
		}
	}
}

func TestLoopbackTrailersOnEveryAttempt(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	var bodies []string
	record := func(code int) h.Step {
		return h.Func(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, r.Trailer.Clone())
			mu.Unlock()
			w.WriteHeader(code)
		})
	}
	bodyKinds := map[string]func(string) io.Reader{
		"opaque":  func(s string) io.Reader { return &opaqueBody{Reader: strings.NewReader(s)} },
		"GetBody": func(s string) io.Reader { return strings.NewReader(s) },
	}
	for name, mk := range bodyKinds {
		for _, size := range []int{0, 5} {
			if name == "GetBody" && size == 0 {
				continue // NewRequest makes that http.NoBody: nothing, not even trailers, is sent
			}
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				mu.Lock()
				got, bodies = nil, nil
				mu.Unlock()
				srv := h.NewServer(t, record(503), record(200))
				payload := strings.Repeat("t", size)
				req := newReq(t, "PUT", srv.URL, mk(payload))
				req.ContentLength = -1 // as net/http requires to send trailers
				req.Trailer = http.Header{"X-Checksum": {"abc123"}}
				resp, err := (&http.Client{Transport: NewTransport(srv.Transport(), quick...)}).Do(req)
				require.NoError(t, err)
				_ = resp.Body.Close()
				assert.Equal(t, 200, resp.StatusCode)
				for _, r := range srv.Requests() {
					bodies = append(bodies, string(r.Body))
				}
				mu.Lock()
				defer mu.Unlock()
				require.Len(t, got, 2)
				for i, tr := range got {
					assert.Equal(t, "abc123", tr.Get("X-Checksum"), "attempt %d carries the trailer", i+1)
					assert.Equal(t, payload, bodies[i])
				}
			})
		}
	}
}

// readFunc adapts a function to io.Reader.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// A body read whole into the buffer is closed before the first attempt
// goes out: its owner learns at once that it is done with.
func TestBufferedBodyClosedBeforeFirstAttempt(t *testing.T) {
	body := &opaqueBody{Reader: strings.NewReader("payload")}
	var closesAtSend int32 = -1
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if closesAtSend < 0 {
			closesAtSend = body.closes.Load()
		}
		_, _ = io.ReadAll(r.Body)
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
	})
	req := newReq(t, "PUT", "http://svc/x", nil)
	req.Body = body
	_, err := NewTransport(base).RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, int32(1), closesAtSend, "closed once, before attempt 1")
	assert.Equal(t, int32(1), body.closes.Load(), "and never again")
}
