package retry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	h "github.com/retrykit/retry/httptest_helpers"
)

// randomBytes returns n bytes from a fixed seed.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// oddReader reads its source in chunks of odd, changing sizes.
type oddReader struct {
	r io.Reader
	i int
}

func (o *oddReader) Read(p []byte) (int, error) {
	sizes := [...]int{1, 7, 4093, 8191, 65537, 3, 31337}
	n := min(len(p), sizes[o.i%len(sizes)])
	o.i++
	return o.r.Read(p[:n])
}

// resumeTransport is a Transport that resumes up to n times, 1ms apart,
// with its own metrics, over srv.
func resumeTransport(t *testing.T, n int, opts ...Option) (*Transport, *Metrics) {
	m, _ := newTestMetrics(t)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return NewTransport(base, append([]Option{discard, WithName("dl"), WithMetrics(m), WithSleepTime(time.Millisecond),
		WithJitter(NoJitter), WithResumeBody(n)}, opts...)...), m
}

func leakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// A 16 MiB body cut three times at random offsets arrives whole, read in
// odd-sized chunks; the server sends at most 5% more than the body.
func TestResumeCutThreeTimes(t *testing.T) {
	leakCheck(t)
	const size = 16 << 20
	data := randomBytes(1, size)
	rng := rand.New(rand.NewPCG(2, 2))
	// The k-th response is cut after cuts[k] bytes of its own body.
	var cuts []int64
	left := int64(size)
	for range 3 {
		c := 1 + rng.Int64N(left/2)
		cuts = append(cuts, c)
		left -= c
	}
	res := h.NewResource(data).CutAfter(cuts...)
	srv := h.NewServer(t, res)
	tr, m := resumeTransport(t, 5)

	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL+"/blob", nil))
	require.NoError(t, err)
	sum := sha256.New()
	n, err := io.Copy(sum, &oddReader{r: resp.Body})
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, int64(size), n)
	want := sha256.Sum256(data)
	assert.Equal(t, want[:], sum.Sum(nil), "the same bytes")
	assert.LessOrEqual(t, float64(res.BytesSent()), 1.05*size, "sent %d bytes for a body of %d", res.BytesSent(), size)

	reqs := res.Requests()
	require.Len(t, reqs, 4, "the request and three resumes")
	var at int64
	for i, r := range reqs {
		if i == 0 {
			assert.Empty(t, r.Range)
			assert.Equal(t, http.StatusOK, r.Status)
		} else {
			at += cuts[i-1]
			assert.Equal(t, "bytes="+strconv.FormatInt(at, 10)+"-", r.Range, "resume %d starts where the body broke", i)
			assert.Equal(t, reqs[0].ETag, r.IfRange, "If-Range: the first response's ETag")
			assert.Equal(t, http.StatusPartialContent, r.Status)
		}
	}
	assert.Equal(t, 3.0, testutil.ToFloat64(m.resumes.WithLabelValues("dl", "ok")))
}

// The resource changes between the cut and the resume: ErrResumeMismatch,
// and every byte delivered before it is of the first version.
func TestResumeResourceChanged(t *testing.T) {
	leakCheck(t)
	v1, v2 := randomBytes(3, 100_000), randomBytes(4, 100_000)
	res := h.NewResource(v1).CutAfter(30_000).ChangeAfter(1, v2)
	srv := h.NewServer(t, res)
	tr, m := resumeTransport(t, 5)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.ErrorIs(t, err, ErrResumeMismatch)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, v1[:len(got)], got, "only bytes of the first version")
	assert.Len(t, got, 30_000)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.resumes.WithLabelValues("dl", "mismatch")))
}

// rangeBreaker wraps a Resource: it can drop the Range header of range
// requests (a server that advertises ranges but ignores them) or rewrite
// the Content-Range of a 206.
type rangeBreaker struct {
	res         *h.Resource
	ignoreRange bool
	badRange    bool
}

func (b *rangeBreaker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.ignoreRange && r.Header.Get("Range") != "" {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	if b.badRange && r.Header.Get("Range") != "" {
		w = &contentRangeShifter{ResponseWriter: w}
	}
	b.res.ServeHTTP(w, r)
}

// contentRangeShifter announces a range one byte later than it sends.
type contentRangeShifter struct{ http.ResponseWriter }

func (c *contentRangeShifter) WriteHeader(code int) {
	if cr := c.Header().Get("Content-Range"); code == http.StatusPartialContent && cr != "" {
		first, last, total, _ := parseContentRange(cr)
		c.Header().Set("Content-Range", "bytes "+strconv.FormatInt(first+1, 10)+"-"+strconv.FormatInt(last, 10)+"/"+strconv.FormatInt(total, 10))
	}
	c.ResponseWriter.WriteHeader(code)
}

func TestResumeMismatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrap  func(*h.Resource) http.Handler
		count string
	}{
		{"server ignores Range", func(r *h.Resource) http.Handler { return &rangeBreaker{res: r, ignoreRange: true} }, "mismatch"},
		{"206 with a wrong Content-Range", func(r *h.Resource) http.Handler { return &rangeBreaker{res: r, badRange: true} }, "mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			data := randomBytes(5, 50_000)
			res := h.NewResource(data).CutAfter(20_000)
			srv := httptest.NewServer(tc.wrap(res))
			defer srv.Close()
			tr, m := resumeTransport(t, 5)
			resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			require.ErrorIs(t, err, ErrResumeMismatch)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, data[:20_000], got, "no stitched bytes")
			assert.Equal(t, 1.0, testutil.ToFloat64(m.resumes.WithLabelValues("dl", tc.count)))
		})
	}
}

// Not resumed: a gzip-encoded body, HEAD, POST, a caller's own Range, a
// weak ETag, no validators, no Accept-Ranges, the option off.
func TestResumeNotEligible(t *testing.T) {
	data := randomBytes(6, 40_000)
	for _, tc := range []struct {
		name   string
		res    func() *h.Resource
		method string
		hdr    string
		opts   []Option
	}{
		{"gzip", func() *h.Resource { return h.NewResource(data).Gzip() }, "GET", "", nil},
		{"weak ETag", func() *h.Resource { return h.NewResource(data).WeakETag().NoValidators() }, "GET", "", nil},
		{"no validators", func() *h.Resource { return h.NewResource(data).NoValidators() }, "GET", "", nil},
		{"no Accept-Ranges", func() *h.Resource { return h.NewResource(data).IgnoreRange() }, "GET", "", nil},
		{"caller's Range", func() *h.Resource { return h.NewResource(data) }, "GET", "bytes=0-", nil},
		{"POST", func() *h.Resource { return h.NewResource(data) }, "POST", "", nil},
		{"HEAD", func() *h.Resource { return h.NewResource(data) }, "HEAD", "", nil},
		{"off per request", func() *h.Resource { return h.NewResource(data) }, "GET", "", []Option{WithResumeBody(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := h.NewServer(t, tc.res())
			tr, _ := resumeTransport(t, 5)
			req := newReq(t, tc.method, srv.URL, nil)
			if tc.hdr != "" {
				req.Header.Set("Range", tc.hdr)
			}
			if tc.opts != nil {
				req = req.WithContext(WithRequestOptions(req.Context(), tc.opts...))
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			_, resumable := resp.Body.(*resumeBody)
			assert.False(t, resumable, "the body is returned as it is")
		})
	}
	// And the one that is, for contrast.
	srv := h.NewServer(t, h.NewResource(data))
	tr, _ := resumeTransport(t, 5)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	_, resumable := resp.Body.(*resumeBody)
	assert.True(t, resumable)
	require.NoError(t, resp.Body.Close())
}

// A cancel during the wait before a resume returns at once with the
// context's error; Close during it likewise.
func TestResumeCancelDuringWait(t *testing.T) {
	for _, byClose := range []bool{false, true} {
		t.Run(map[bool]string{false: "cancel", true: "close"}[byClose], func(t *testing.T) {
			leakCheck(t)
			res := h.NewResource(randomBytes(7, 50_000)).CutAfter(10_000)
			srv := h.NewServer(t, res)
			tr, _ := resumeTransport(t, 5, WithSleepTime(time.Hour))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			require.NoError(t, err)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(resp.Body)
				done <- err
			}()
			time.Sleep(50 * time.Millisecond) // the read is waiting an hour to resume
			start := time.Now()
			if byClose {
				require.NoError(t, resp.Body.Close())
			} else {
				cancel()
			}
			select {
			case err := <-done:
				require.Error(t, err)
				if !byClose {
					assert.ErrorIs(t, err, context.Canceled)
				}
				assert.Less(t, time.Since(start), time.Second)
			case <-time.After(5 * time.Second):
				t.Fatal("Read did not return")
			}
			_ = resp.Body.Close()
			assert.Len(t, res.Requests(), 1, "no resume was sent")
		})
	}
}

// After maxResumes, Read returns an error wrapping the read error that
// broke the body; the give-up footprint is written, with resumed_at, and
// each resume's footprint with WithLogTries.
func TestResumeGivesUp(t *testing.T) {
	leakCheck(t)
	data := randomBytes(8, 50_000)
	res := h.NewResource(data).CutAfter(1000, 1000, 1000)
	srv := h.NewServer(t, res)
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &mu}, nil))
	tr, m := resumeTransport(t, 2, WithLogger(logger), WithLogTries(true))
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL+"/f?token=secret", nil))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.Error(t, err)
	require.NoError(t, resp.Body.Close())
	assert.False(t, errors.Is(err, ErrResumeMismatch))
	assert.True(t, errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset"), "wraps the read error: %v", err)
	assert.Equal(t, data[:3000], got)
	assert.Len(t, res.Requests(), 3)
	assert.Equal(t, 2.0, testutil.ToFloat64(m.resumes.WithLabelValues("dl", "ok")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.resumes.WithLabelValues("dl", "failed")))
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	assert.Equal(t, 2, strings.Count(out, `"subject":"Warning at resuming`), out)
	assert.Contains(t, out, `"resumed_at":1000`)
	assert.Contains(t, out, `"resumed_at":2000`)
	assert.Contains(t, out, `"level":"ERROR"`)
	assert.Contains(t, out, `"resumed_at":3000`)
	assert.NotContains(t, out, "secret")
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// A body that never breaks costs one wrapper with the option on, nothing
// with it off.
func TestResumeSuccessPathAllocations(t *testing.T) {
	resp := http.Response{StatusCode: 200, Status: "200 OK", ContentLength: 2,
		Header: http.Header{"Accept-Ranges": {"bytes"}, "Etag": {`"x"`}}}
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c := resp
		c.Body = http.NoBody
		return &c, nil
	})
	req := newReq(t, "GET", "http://svc/x", nil)
	off := NewTransport(base, discard)
	on := NewTransport(base, discard, WithResumeBody(3))
	measure := func(tr *Transport) float64 {
		return testing.AllocsPerRun(200, func() {
			r, err := tr.RoundTrip(req)
			if err == nil {
				_ = r.Body.Close()
			}
		})
	}
	a, b := measure(off), measure(on)
	assert.Equal(t, a+1, b, "one wrapper with the option on (%v off, %v on)", a, b)
}
