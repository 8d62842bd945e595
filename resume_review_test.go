package retry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

// brokenBody gives data, then err.
type brokenBody struct {
	data []byte
	err  error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}
func (b *brokenBody) Close() error { return nil }

// okRange answers a good 206 for the rest of data.
func ok200(data []byte, cut int, cl int64) *http.Response {
	return &http.Response{StatusCode: 200, Status: "200 OK", ContentLength: cl,
		Header: http.Header{"Accept-Ranges": {"bytes"}, "Etag": {`"v1"`}},
		Body:   &brokenBody{data: data[:cut], err: syscall.ECONNRESET}}
}

// A first response without Content-Length (chunked), broken; the 206
// names the total but covers less than the rest: the body does not end
// there silently (it used to, truncated).
func TestResumeUnknownLengthTakesTheRangeTotal(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		if r.Header.Get("Range") == "" {
			writeAndBreak(w, data[:1000]) // chunked
		}
		w.Header().Set("Content-Range", "bytes 1000-1009/5000") // a shorter range: allowed to a server
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data[1000:1010])
	}))
	defer srv.Close()
	tr, _ := resumeTransport(t, 3)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	require.Equal(t, int64(-1), resp.ContentLength)
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// The 206 said the resource is 5000 bytes; the caller must not get a
	// clean EOF at 1010.
	assert.Error(t, err, "got %d bytes and a clean EOF", len(got))
}

// A 206 whose Content-Length is larger than its Content-Range: a mismatch,
// and never a byte past the body's length (the junk used to reach the
// caller).
func TestResumeRangeLongerThanAnnounced(t *testing.T) {
	data := bytes.Repeat([]byte("y"), 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		if r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", "5000")
			writeAndBreak(w, data[:1000])
		}
		w.Header().Set("Content-Range", "bytes 1000-4999/5000")
		w.Header().Set("Content-Length", "4010")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(append(data[1000:], "EXTRA-JUNK"...))
	}))
	defer srv.Close()
	tr, _ := resumeTransport(t, 3)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.ErrorIs(t, err, ErrResumeMismatch, "a 206 whose length is not its range's")
	assert.LessOrEqual(t, len(got), 5000, "never a byte past the body's length; got %q at the end", got[min(len(got), 5000):])
	assert.Equal(t, data[:len(got)], got)
}

// Read's errors are redacted of the URL's secrets, as RoundTrip's *Error
// and the footprints are: in the base's error text and in reason phrases.
func TestResumeErrorsAreRedacted(t *testing.T) {
	data := bytes.Repeat([]byte("z"), 100)
	for name, second := range map[string]reply{
		"base url.Error": func(r *http.Request) (*http.Response, error) {
			return nil, &url.Error{Op: "Get", URL: r.URL.String(), Err: syscall.ECONNRESET}
		},
		"reason phrase of a 503": func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 503, Status: "503 bad token t0ps3cret", Header: http.Header{}, Body: http.NoBody}, nil
		},
		"reason phrase of a 200": func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Status: "200 ok for token t0ps3cret", Header: http.Header{}, Body: http.NoBody}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if calls.Add(1) == 1 {
					return ok200(data, 50, 100), nil
				}
				return second(r)
			})
			tr := NewTransport(base, discard, WithSleepTime(time.Millisecond), WithResumeBody(1))
			resp, err := tr.RoundTrip(newReq(t, "GET", secretURL("127.0.0.1:8080"), nil))
			require.NoError(t, err)
			_, err = io.ReadAll(resp.Body)
			require.Error(t, err)
			assertNoSecret(t, err.Error(), "Read's error")
		})
	}
}

// A 503 to a resume with Retry-After: the next resume waits for it.
func TestResumeHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := bytes.Repeat([]byte("w"), 100)
		var calls atomic.Int32
		var at []time.Time
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			at = append(at, time.Now())
			switch calls.Add(1) {
			case 1:
				return ok200(data, 50, 100), nil
			case 2:
				return &http.Response{StatusCode: 503, Status: "503", Header: http.Header{"Retry-After": {"5"}}, Body: http.NoBody}, nil
			}
			return &http.Response{StatusCode: 206, Status: "206", ContentLength: 50,
				Header: http.Header{"Content-Range": {"bytes 50-99/100"}, "Etag": {`"v1"`}},
				Body:   io.NopCloser(bytes.NewReader(data[50:]))}, nil
		})
		tr := NewTransport(base, discard, WithSleepTime(time.Millisecond), WithMaxDelay(10*time.Second), WithResumeBody(3))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://127.0.0.1:1/f", nil))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, data, got)
		require.Len(t, at, 3)
		assert.GreaterOrEqual(t, at[2].Sub(at[1]), 5*time.Second, "Retry-After: 5 honoured")
	})
}

// All bytes of a chunked body arrived, but the terminating chunk was lost:
// the resume asks bytes=N- and gets 416 bytes */N, which ends the body
// cleanly (it used to be a mismatch for a complete body).
func TestResumeCompleteBodyThen416IsEOF(t *testing.T) {
	data := bytes.Repeat([]byte("q"), 3000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		if r.Header.Get("Range") == "" {
			writeAndBreak(w, data)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	tr, _ := resumeTransport(t, 3)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Len(t, got, 3000)
	assert.NoError(t, err, "the whole body arrived; the server says 416 bytes */%d", len(data))
}

var _ = context.Background
var _ = fmt.Sprint
var _ = strconv.Itoa
var _ = strings.Contains

// The read error that broke the body is still wrapped when a resume itself
// fails (503, then out of resumes; or a non-retryable error of its send).
func TestResumeGiveUpWrapsTheReadError(t *testing.T) {
	data := bytes.Repeat([]byte("e"), 100)
	for name, second := range map[string]reply{
		"503 then out of resumes":  respond(503),
		"non-retryable send error": func(*http.Request) (*http.Response, error) { return nil, fmt.Errorf("x509: nope") },
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if calls.Add(1) == 1 {
					resp := ok200(data, 50, 100)
					resp.Body = &brokenBody{data: data[:50], err: io.ErrUnexpectedEOF}
					return resp, nil
				}
				return second(r)
			})
			tr := NewTransport(base, discard, WithSleepTime(time.Millisecond), WithResumeBody(1))
			resp, err := tr.RoundTrip(newReq(t, "GET", "http://127.0.0.1:1/f", nil))
			require.NoError(t, err)
			_, err = io.ReadAll(resp.Body)
			require.Error(t, err)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "doc: Read returns an error that wraps the read error that broke the body: %v", err)
		})
	}
}

// Attempt timeout, hedging, per-request options and Close in every phase:
// no leak, no race, the late response is closed.
func TestResumeCloseDuringSend(t *testing.T) {
	leakCheck(t)
	data := bytes.Repeat([]byte("c"), 100)
	release := make(chan struct{})
	late := newTrackedBody(50)
	var calls atomic.Int32
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return ok200(data, 50, 100), nil
		}
		<-release // a base that ignores the context
		return &http.Response{StatusCode: 206, Status: "206", ContentLength: 50,
			Header: http.Header{"Content-Range": {"bytes 50-99/100"}}, Body: late}, nil
	})
	tr := NewTransport(base, discard, WithSleepTime(time.Millisecond), WithResumeBody(1))
	resp, err := tr.RoundTrip(newReq(t, "GET", "http://127.0.0.1:1/f", nil))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	for calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, resp.Body.Close())
	close(release)
	err = <-done
	require.Error(t, err)
	t.Log(err)
	assert.EqualValues(t, 1, late.closes.Load(), "the response opened after Close is closed")
	_, err = resp.Body.Read(make([]byte, 1))
	assert.Error(t, err)
}

func TestResumeWithAttemptTimeoutHedgeAndRequestOptions(t *testing.T) {
	leakCheck(t)
	data := bytes.Repeat([]byte("h"), 200_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("Range") == "" {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", "200000")
			writeAndBreak(w, data[:1000])
		}
		w.Header().Set("X-Attempt", r.Header.Get("X-Attempt"))
		w.Header().Set("Content-Range", "bytes 1000-199999/200000")
		w.Header().Set("Content-Length", "199000")
		w.WriteHeader(206)
		_, _ = w.Write(data[1000:100_000])
		http.NewResponseController(w).Flush()
		time.Sleep(150 * time.Millisecond) // longer than the attempt timeout, after the headers
		_, _ = w.Write(data[100_000:])
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := NewTransport(base, discard, WithSleepTime(time.Millisecond), WithAttemptHeader("X-Attempt"),
		WithHedge(&Hedge{Delay: time.Second}))
	req := newReq(t, "GET", srv.URL, nil)
	req = req.WithContext(WithRequestOptions(req.Context(), WithResumeBody(2), WithAttemptTimeout(50*time.Millisecond)))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.True(t, bytes.Equal(data, got))
}

func TestResumeAfterRedirect(t *testing.T) {
	leakCheck(t)
	data := randomBytes(9, 300_000)
	res := h.NewResource(data).CutAfter(100_000, 50_000)
	mux := http.NewServeMux()
	mux.Handle("/file", res)
	mux.Handle("/old", http.RedirectHandler("/file", http.StatusFound))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tr, _ := resumeTransport(t, 3)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/old?token=abc")
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.True(t, bytes.Equal(data, got))
	assert.Len(t, res.Requests(), 3)
}

// A Last-Modified not a second older than Date is a weak validator (RFC
// 9110 8.8.2.2, 13.1.5): the body is not resumable, so a change within the
// same second cannot be stitched (it used to be).
func TestResumeLastModifiedNeedsADateASecondLater(t *testing.T) {
	v1, v2 := bytes.Repeat([]byte("1"), 5000), bytes.Repeat([]byte("2"), 5000)
	mod := time.Now().UTC().Truncate(time.Second)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", mod.Format(http.TimeFormat))
		if hits.Add(1) == 1 {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Last-Modified", mod.Format(http.TimeFormat))
			w.Header().Set("Content-Length", "5000")
			writeAndBreak(w, v1[:1000])
		}
		http.ServeContent(w, r, "", mod, bytes.NewReader(v2)) // changed in the same second
	}))
	defer srv.Close()
	tr, _ := resumeTransport(t, 3)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err == nil {
		assert.Fail(t, "stitched", "got %d bytes of v1 and %d of v2", bytes.Count(got, []byte("1")), bytes.Count(got, []byte("2")))
	}
}

// Resumes that follow progress do not spend the budget: the default budget
// (3 retries per 10 s) does not cap a download cut five times.
func TestResumeDefaultBudget(t *testing.T) {
	data := randomBytes(10, 600_000)
	res := h.NewResource(data).CutAfter(100_000, 100_000, 100_000, 100_000, 100_000)
	srv := h.NewServer(t, res)
	tr, _ := resumeTransport(t, 10)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.NoError(t, err, "after %d bytes", len(got))
}

func TestResumeCloseRaceStress(t *testing.T) {
	leakCheck(t)
	data := randomBytes(11, 400_000)
	res := h.NewResource(data).CutAfter(50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000,
		50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000)
	srv := h.NewServer(t, res)
	tr, _ := resumeTransport(t, 100, WithBudget(nil), WithAttemptTimeout(time.Second))
	for i := range 20 {
		resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
		if err != nil {
			continue
		}
		done := make(chan struct{})
		go func() { defer close(done); _, _ = io.Copy(io.Discard, resp.Body) }()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		_ = resp.Body.Close()
		<-done
	}
}

// partial returns a 206 for data[from:] cut after n bytes (n < 0: whole).
func partial(data []byte, from, n int) *http.Response {
	var body io.ReadCloser = io.NopCloser(bytes.NewReader(data[from:]))
	if n >= 0 {
		body = &brokenBody{data: data[from : from+n], err: syscall.ECONNRESET}
	}
	return &http.Response{StatusCode: 206, Status: "206 Partial Content", ContentLength: int64(len(data) - from),
		Header: http.Header{"Etag": {`"v1"`}, "Content-Range": {"bytes " + strconv.Itoa(from) + "-" + strconv.Itoa(len(data)-1) + "/" + strconv.Itoa(len(data))}},
		Body:   body}
}

// After progress, the schedule starts again and the first try is free of
// the budget; tries without progress spend it and follow the schedule.
func TestResumeScheduleAndBudgetFollowProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := bytes.Repeat([]byte("p"), 1000)
		var mu sync.Mutex
		var times []time.Time
		calls := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			calls++
			i := calls
			times = append(times, time.Now())
			mu.Unlock()
			switch {
			case i == 1:
				return ok200(data, 100, 1000), nil
			case i <= 4: // three resumes that each make progress, then break
				return partial(data, (i-1)*100, 100), nil
			}
			return partial(data, 400, -1), nil
		})
		tr := NewTransport(base, discard, WithSleepTime(time.Second), WithJitter(NoJitter), WithBudget(denyingBudget{}), WithResumeBody(10))
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/f", nil))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "every resume followed progress: free of the (denying) budget")
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, data, got)
		for i := 1; i < len(times); i++ {
			assert.Equal(t, time.Second, times[i].Sub(times[i-1]), "the schedule starts again after progress (resume %d)", i)
		}

		// Without progress, the second try asks the budget, which denies.
		calls = 0
		base2 := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			calls++
			i := calls
			mu.Unlock()
			if i == 1 {
				return ok200(data, 100, 1000), nil
			}
			return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: http.NoBody}, nil
		})
		tr = NewTransport(base2, discard, WithSleepTime(time.Second), WithBudget(denyingBudget{}), WithResumeBody(10))
		resp, err = tr.RoundTrip(newReq(t, "GET", "http://svc/f", nil))
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		assert.ErrorIs(t, err, syscall.ECONNRESET, "wraps the read error that broke the body")
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 2, calls, "the request and one free try")
	})
}

// writeAndBreak sends b as the response body so far, then breaks the
// connection (the client's Read fails after b).
func writeAndBreak(w http.ResponseWriter, b []byte) {
	_, _ = w.Write(b)
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}
