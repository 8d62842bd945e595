package retry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

// ctxBody is a response body that fails to read once its request's context
// has ended, as net/http's does.
type ctxBody struct {
	ctx  context.Context
	data io.Reader
}

func (b *ctxBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.data.Read(p)
}

func (b *ctxBody) Close() error { return nil }

// Bug: the attempt timer could fire after the base returned a response that
// was then handed out as a success, cancelling its context under the
// caller's body reads. Exactly one of "returned" and "fired" must win.
func TestTransportAttemptTimerRaceWithResponse(t *testing.T) {
	const d = 100 * time.Millisecond
	failures := 0
	for range 300 {
		synctest.Test(t, func(t *testing.T) {
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				time.Sleep(d) // answer exactly at the attempt timeout
				return &http.Response{StatusCode: 200, Header: http.Header{},
					Body: &ctxBody{ctx: r.Context(), data: strings.NewReader("ok")}}, nil
			})
			tr := NewTransport(base, WithMaxAttempts(1), WithAttemptTimeout(d), discard)
			resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
			if err != nil {
				var re *Error
				require.ErrorAs(t, err, &re, "a lost race is a timeout, reported as such")
				require.Equal(t, Timeout, re.Category)
				return
			}
			synctest.Wait() // let a late timer function run, if one is due
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != "ok" {
				failures++
			}
			_ = resp.Body.Close()
		})
	}
	assert.Zero(t, failures, "a response returned as a success must stay readable until closed")
}

// stallBody yields one byte, then blocks until it is closed.
type stallBody struct {
	once   sync.Once
	sent   bool
	closed chan struct{}
}

func newStallBody() *stallBody { return &stallBody{closed: make(chan struct{})} }

func (b *stallBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		p[0] = 'x'
		return 1, nil
	}
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *stallBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// Bug: draining a retried response had no time limit: a 503 whose body
// stalls after one byte blocked the retry loop forever.
func TestTransportDrainIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var stalled []*stallBody
		calls := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			if calls == 1 {
				b := newStallBody()
				stalled = append(stalled, b)
				return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: b}, nil
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
		})
		start := time.Now()
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		elapsed := time.Since(start)
		assert.Less(t, elapsed, time.Second+time.Second, "the schedule's 1s wait plus at most a short drain")
		require.Len(t, stalled, 1)
		select {
		case <-stalled[0].closed:
		default:
			t.Fatal("the stalled body was not closed")
		}
	})
}

// Bug: a classifier that says Success for an error made RoundTrip return
// (nil, nil).
func TestTransportNeverReturnsNilNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{fail(syscall.ECONNRESET)}}
		tr := NewTransport(base, append(fast, WithClassifier(func(*http.Response, error) Category { return Success }))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		assert.Nil(t, resp)
		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		assert.Equal(t, 1, base.Calls())
	})
}

// Bug: every RoundTrip counts exactly one outcome, and the outcome agrees
// with what RoundTrip returned.
func TestTransportOutcomeCountedOnce(t *testing.T) {
	reqs := func(m *Metrics, outcome string) float64 {
		return testutil.ToFloat64(m.requests.WithLabelValues("default", "PUT", outcome))
	}
	t.Run("body read error", func(t *testing.T) {
		m, err := NewMetrics(prometheus.NewRegistry())
		require.NoError(t, err)
		tr := NewTransport(&fakeBase{script: []reply{respond(200)}}, WithMetrics(m))
		req := newReq(t, "PUT", "http://svc/", nil)
		req.Body = &opaqueBody{Reader: iotest.ErrReader(errors.New("disk on fire"))}
		_, err = tr.RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, 1.0, reqs(m, "request_error"))
		assert.Equal(t, 1, testutil.CollectAndCount(m.requests))
	})
	t.Run("content length mismatch", func(t *testing.T) {
		m, err := NewMetrics(prometheus.NewRegistry())
		require.NoError(t, err)
		tr := NewTransport(&fakeBase{script: []reply{respond(200)}}, WithMetrics(m))
		req := newReq(t, "PUT", "http://svc/", nil)
		req.Body = &opaqueBody{Reader: strings.NewReader("short")}
		req.ContentLength = 10
		_, err = tr.RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, 1.0, reqs(m, "request_error"))
	})
	t.Run("success as the context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			m, err := NewMetrics(prometheus.NewRegistry())
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				cancel() // the caller gives up just as the answer arrives
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
			})
			tr := NewTransport(base, WithMetrics(m))
			resp, err := tr.RoundTrip(newReq(t, "PUT", "http://svc/", nil).WithContext(ctx))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, 1.0, reqs(m, "ok"), "returned as a success, counted as one")
			assert.Equal(t, 1, testutil.CollectAndCount(m.requests))
		})
	})
}

// The zero Transport works as NewTransport(nil) does, also when many
// goroutines start using it at once.
func TestZeroTransport(t *testing.T) {
	srv := h.NewServer(t, h.Status(200).Body("ok"))
	var tr Transport
	client := &http.Client{Transport: &tr}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := client.Get(srv.URL)
			if assert.NoError(t, err) {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, 200, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	assert.NotNil(t, tr.base, "defaults set once")
	assert.Equal(t, DefaultMaxAttempts, tr.cfg.maxAttempts)
	assert.NotNil(t, tr.cfg.budget, "a zero Transport has a budget of its own, as NewTransport(nil) does")
	tr.CloseIdleConnections()
}

// A base that returns neither a response nor an error is named by its
// type, as net/http names a faulty RoundTripper.
func TestTransportNamesBrokenBase(t *testing.T) {
	neither := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) { return nil, nil }}}
	_, err := NewTransport(neither, WithMaxAttempts(1)).RoundTrip(newReq(t, "GET", "http://svc/", nil))
	require.ErrorIs(t, err, errNilResponse)
	assert.Contains(t, err.Error(), "(*retry.fakeBase)")
}

// Every message says "retry:" once, however the errors nest.
func TestErrorSaysRetryOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &fakeBase{script: []reply{fail(syscall.ECONNRESET)}}
		_, err := NewTransport(base, append(fast, WithBudget(&Budget{MinPerSecond: 0.0001, Ratio: 0.0001}))...).
			RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.ErrorIs(t, err, ErrBudgetExhausted)
		assert.Equal(t, "retry: stopped after 1 attempt (retry budget exhausted): connection reset by peer", err.Error())
		assert.Equal(t, 1, strings.Count(err.Error(), "retry:"))

		base = &fakeBase{script: []reply{respond(503)}}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		_, err = NewTransport(base, fast...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		assert.Equal(t, "retry: stopped after 1 attempt (context canceled): server answered 503 Service Unavailable", err.Error())
	})
}

// CloseIdleConnections on a zero Transport, while its first RoundTrip
// sets the defaults, is no data race (http.Client calls it at any time).
func TestZeroTransportCloseIdleConnectionsRace(t *testing.T) {
	srv := h.NewServer(t, h.Status(200))
	var tr Transport
	client := &http.Client{Transport: &tr}
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := client.Get(srv.URL)
		if assert.NoError(t, err) {
			_ = resp.Body.Close()
		}
	})
	wg.Go(client.CloseIdleConnections)
	wg.Wait()
}

// A request whose context is done before or while its body is buffered
// counts as canceled (or deadline), as the error it gets says.
func TestTransportOutcomeOfContextWhileBuffering(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	tr := NewTransport(&fakeBase{script: []reply{respond(200)}}, WithMetrics(m))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := newReq(t, "POST", "http://svc/", nil).WithContext(ctx)
	req.Body = &opaqueBody{Reader: strings.NewReader("payload")}
	_, err = tr.RoundTrip(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("default", "POST", "canceled")))
	assert.Equal(t, 1, testutil.CollectAndCount(m.requests))
}

// GetBody failing on a retry ends the call with an *Error that keeps the
// failure before it and names why: nothing is lost.
func TestTransportGetBodyFailureKeepsTheFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reopenErr := errors.New("file gone")
		req := newReq(t, "PUT", "http://svc/x", strings.NewReader("abc"))
		req.GetBody = func() (io.ReadCloser, error) { return nil, reopenErr }
		base := &fakeBase{script: []reply{respond(503)}}
		resp, err := NewTransport(base, fast...).RoundTrip(req)
		assert.Nil(t, resp)
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 1, re.Attempts, "attempts sent")
		assert.Equal(t, ServerError, re.Category)
		assert.Contains(t, re.Err.Error(), "503", "the failure before it")
		assert.ErrorIs(t, err, reopenErr)
		assert.ErrorIs(t, err, ErrNotReplayable)
		assert.Equal(t, 1, base.Calls())
	})
}
