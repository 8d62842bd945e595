package httptest_helpers_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	h "github.com/retrykit/retry/httptest_helpers"
)

// noLeaks checks, after the test's servers are closed, that no goroutine is
// left behind (cut connections wait for acknowledgements in the handler).
// Call it before starting any server: cleanups run last-in first-out.
func noLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func content(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// do sends a request with the given headers ("Key", "value", …) and returns
// the response with its body read whole (or up to the error in readErr).
func do(t *testing.T, c *http.Client, method, url string, kv ...string) (resp *http.Response, body []byte, readErr error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	for i := 0; i < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err = c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, readErr = io.ReadAll(resp.Body)
	return resp, body, readErr
}

var strongTag = regexp.MustCompile(`^"[0-9a-f]{16}"$`)

func TestResourceWhole(t *testing.T) {
	data := content(100_000)
	res := h.NewResource(data)
	srv := h.NewServer(t, res)

	resp, body, err := do(t, srv.Client(), "GET", srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, data, body)
	assert.Equal(t, int64(len(data)), resp.ContentLength)
	assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	sum := sha256.Sum256(data)
	assert.Equal(t, `"`+hex.EncodeToString(sum[:8])+`"`, resp.Header.Get("ETag"))
	assert.Equal(t, "Wed, 01 Jan 2025 00:00:00 GMT", resp.Header.Get("Last-Modified"))
	assert.Empty(t, resp.Header.Get("Content-Range"))

	assert.Equal(t, int64(len(data)), res.BytesSent())
	reqs := res.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, h.ResourceRequest{
		Method: "GET", Status: 200, ETag: resp.Header.Get("ETag"), Sent: int64(len(data)),
	}, reqs[0])
}

func TestResourceHEAD(t *testing.T) {
	data := content(1000)
	res := h.NewResource(data)
	srv := h.NewServer(t, res)

	for _, rg := range []string{"", "bytes=10-"} { // Range is for GET only
		resp, body, err := do(t, srv.Client(), "HEAD", srv.URL, "Range", rg)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, rg)
		assert.Empty(t, body)
		assert.Equal(t, int64(1000), resp.ContentLength)
		assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
		assert.Regexp(t, strongTag, resp.Header.Get("ETag"))
	}
	assert.Zero(t, res.BytesSent())

	resp, _, err := do(t, srv.Client(), "POST", srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 405, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}

func TestResourceRanges(t *testing.T) {
	data := []byte("0123456789")
	res := h.NewResource(data)
	srv := h.NewServer(t, res)
	for _, tc := range []struct {
		rng, contentRange string
		status            int
		body              string
	}{
		{"bytes=3-", "bytes 3-9/10", 206, "3456789"},
		{"bytes=2-4", "bytes 2-4/10", 206, "234"},
		{"bytes=0-0", "bytes 0-0/10", 206, "0"},
		{"bytes=9-", "bytes 9-9/10", 206, "9"},
		{"bytes=5-100", "bytes 5-9/10", 206, "56789"},
		{"bytes=-3", "bytes 7-9/10", 206, "789"},
		{"bytes=-30", "bytes 0-9/10", 206, "0123456789"},
		{"BYTES = 1-2", "bytes 1-2/10", 206, "12"},
		{"bytes=10-", "bytes */10", 416, ""},
		{"bytes=99-100", "bytes */10", 416, ""},
		{"bytes=-0", "bytes */10", 416, ""},
		{"bytes=99999999999999999999-", "bytes */10", 416, ""},
		{"bytes=0-1,4-5", "", 200, "0123456789"}, // several ranges: whole
		{"bytes=5-2", "", 200, "0123456789"},     // reversed: ignored
		{"bytes=x-", "", 200, "0123456789"},
		{"bytes=+1-", "", 200, "0123456789"},
		{"items=0-1", "", 200, "0123456789"},
		{"bytes", "", 200, "0123456789"},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", tc.rng)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.contentRange, resp.Header.Get("Content-Range"))
			assert.Equal(t, tc.body, string(body))
			assert.Equal(t, int64(len(tc.body)), resp.ContentLength)
			assert.Regexp(t, strongTag, resp.Header.Get("ETag"))
			last := res.Requests()[len(res.Requests())-1]
			assert.Equal(t, tc.rng, last.Range)
			assert.Equal(t, tc.status, last.Status)
			assert.Equal(t, tc.contentRange, last.ContentRange)
		})
	}
	t.Run("empty content", func(t *testing.T) {
		srv := h.NewServer(t, h.NewResource(nil))
		for _, rng := range []string{"bytes=0-", "bytes=-1"} {
			resp, _, err := do(t, srv.Client(), "GET", srv.URL, "Range", rng)
			require.NoError(t, err)
			assert.Equal(t, 416, resp.StatusCode)
			assert.Equal(t, "bytes */0", resp.Header.Get("Content-Range"))
		}
	})
}

func TestResourceIfRange(t *testing.T) {
	data := []byte("0123456789")
	srv := h.NewServer(t, h.NewResource(data))
	head, _, err := do(t, srv.Client(), "HEAD", srv.URL)
	require.NoError(t, err)
	etag, lastMod := head.Header.Get("ETag"), head.Header.Get("Last-Modified")
	lm, err := http.ParseTime(lastMod)
	require.NoError(t, err)

	for _, tc := range []struct {
		name, ifRange string
		status        int
	}{
		{"same ETag", etag, 206},
		{"other ETag", `"0000000000000000"`, 200},
		{"weak form of the ETag", "W/" + etag, 200},
		{"same date", lastMod, 206},
		{"a second later", lm.Add(time.Second).Format(http.TimeFormat), 200},
		{"a second earlier", lm.Add(-time.Second).Format(http.TimeFormat), 200},
		{"garbage", "yesterday", 200},
		{"two ETags", etag + ", " + etag, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-", "If-Range", tc.ifRange)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.status == 206 {
				assert.Equal(t, "456789", string(body))
			} else {
				assert.Equal(t, string(data), string(body))
			}
		})
	}
	// A failed If-Range ignores the Range, even an unsatisfiable one.
	resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=50-", "If-Range", `"other"`)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, string(data), string(body))
}

func TestResourceWeakETagNeverMatchesIfRange(t *testing.T) {
	data := []byte("0123456789")
	res := h.NewResource(data).WeakETag()
	srv := h.NewServer(t, res)
	head, _, err := do(t, srv.Client(), "HEAD", srv.URL)
	require.NoError(t, err)
	etag := head.Header.Get("ETag")
	assert.Regexp(t, `^W/"[0-9a-f]{16}"$`, etag)

	for _, ir := range []string{etag, etag[2:]} {
		resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-", "If-Range", ir)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, ir)
		assert.Equal(t, string(data), string(body))
	}
	// If-Match compares strongly too; If-None-Match weakly.
	resp, _, err := do(t, srv.Client(), "GET", srv.URL, "If-Match", etag)
	require.NoError(t, err)
	assert.Equal(t, 412, resp.StatusCode)
	resp, _, err = do(t, srv.Client(), "GET", srv.URL, "If-None-Match", etag)
	require.NoError(t, err)
	assert.Equal(t, 304, resp.StatusCode)
	// The date is still a strong validator.
	resp, _, err = do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-", "If-Range", head.Header.Get("Last-Modified"))
	require.NoError(t, err)
	assert.Equal(t, 206, resp.StatusCode)
}

func TestResourcePreconditions(t *testing.T) {
	data := []byte("0123456789")
	srv := h.NewServer(t, h.NewResource(data))
	head, _, err := do(t, srv.Client(), "HEAD", srv.URL)
	require.NoError(t, err)
	etag, lastMod := head.Header.Get("ETag"), head.Header.Get("Last-Modified")
	lm, _ := http.ParseTime(lastMod)
	before := lm.Add(-time.Hour).Format(http.TimeFormat)

	for _, tc := range []struct {
		name   string
		kv     []string
		status int
	}{
		{"If-Match same", []string{"If-Match", etag}, 200},
		{"If-Match in a list", []string{"If-Match", `"a", ` + etag}, 200},
		{"If-Match star", []string{"If-Match", "*"}, 200},
		{"If-Match other", []string{"If-Match", `"other"`}, 412},
		{"If-Match weak form", []string{"If-Match", "W/" + etag}, 412},
		{"If-Match other beats Range", []string{"If-Match", `"other"`, "Range", "bytes=1-"}, 412},
		{"If-Match same with Range", []string{"If-Match", etag, "Range", "bytes=1-"}, 206},
		{"If-None-Match same", []string{"If-None-Match", etag}, 304},
		{"If-None-Match weak form", []string{"If-None-Match", "W/" + etag}, 304},
		{"If-None-Match star", []string{"If-None-Match", "*"}, 304},
		{"If-None-Match other", []string{"If-None-Match", `"other"`}, 200},
		{"If-Unmodified-Since before", []string{"If-Unmodified-Since", before}, 412},
		{"If-Unmodified-Since same", []string{"If-Unmodified-Since", lastMod}, 200},
		{"If-Unmodified-Since ignored under If-Match", []string{"If-Match", etag, "If-Unmodified-Since", before}, 200},
		{"If-Modified-Since same", []string{"If-Modified-Since", lastMod}, 304},
		{"If-Modified-Since before", []string{"If-Modified-Since", before}, 200},
		{"If-Modified-Since ignored under If-None-Match", []string{"If-None-Match", `"other"`, "If-Modified-Since", lastMod}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := do(t, srv.Client(), "GET", srv.URL, tc.kv...)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			switch tc.status {
			case 200:
				assert.Equal(t, string(data), string(body))
			case 304:
				assert.Empty(t, body)
				assert.Equal(t, etag, resp.Header.Get("ETag"))
			case 412:
				assert.Empty(t, body)
			}
		})
	}
}

func TestResourceNoValidators(t *testing.T) {
	data := []byte("0123456789")
	srv := h.NewServer(t, h.NewResource(data).NoValidators().WeakETag())
	resp, _, err := do(t, srv.Client(), "GET", srv.URL)
	require.NoError(t, err)
	assert.Empty(t, resp.Header.Get("ETag"))
	assert.Empty(t, resp.Header.Get("Last-Modified"))
	assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))

	resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-")
	require.NoError(t, err)
	assert.Equal(t, 206, resp.StatusCode, "ranges without a condition still work")
	assert.Equal(t, "456789", string(body))
	for _, ir := range []string{`"x"`, "Wed, 01 Jan 2025 00:00:00 GMT"} {
		resp, _, err = do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-", "If-Range", ir)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, ir)
	}
	resp, _, err = do(t, srv.Client(), "GET", srv.URL, "If-Match", `"x"`)
	require.NoError(t, err)
	assert.Equal(t, 412, resp.StatusCode)
	resp, _, err = do(t, srv.Client(), "GET", srv.URL, "If-Match", "*")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
}

func TestResourceIgnoreRange(t *testing.T) {
	data := []byte("0123456789")
	res := h.NewResource(data).IgnoreRange()
	srv := h.NewServer(t, res)
	for _, kv := range [][]string{{"Range", "bytes=4-"}, {"Range", "bytes=50-"}, {"Range", "bytes=4-", "If-Range", `"x"`}} {
		resp, body, err := do(t, srv.Client(), "GET", srv.URL, kv...)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, kv)
		assert.Equal(t, string(data), string(body))
		assert.Empty(t, resp.Header.Get("Accept-Ranges"))
		assert.Empty(t, resp.Header.Get("Content-Range"))
		assert.Regexp(t, strongTag, resp.Header.Get("ETag"))
	}
	resp, _, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=4-", "If-Match", `"x"`)
	require.NoError(t, err)
	assert.Equal(t, 412, resp.StatusCode, "preconditions still apply")
	assert.Equal(t, int64(30), res.BytesSent())
}

// readErrIsCut asserts that err ends a cut body: a reset over HTTP/1 on
// Linux, a stream error over HTTP/2, never a clean end.
func readErrIsCut(t *testing.T, err error, proto int) {
	t.Helper()
	require.Error(t, err, "a cut body must not end cleanly")
	assert.NotErrorIs(t, err, io.EOF)
	if proto == 2 {
		assert.Contains(t, err.Error(), "stream error")
		return
	}
	if runtime.GOOS == "linux" {
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	} else {
		assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
	}
}

func TestResourceCutAfter(t *testing.T) {
	data := content(200_000)
	for _, tc := range []struct {
		name  string
		start func(testing.TB, ...h.Step) *h.Server
		proto int
	}{
		{"HTTP/1.1", h.NewServer, 1},
		{"HTTP/1.1 over TLS", h.NewTLSServer, 1},
		{"HTTP/2", h.NewHTTP2Server, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			res := h.NewResource(data).CutAfter(1000, -1, 0, 10, 1<<30)
			srv := tc.start(t, h.Status(503), res)
			c := srv.Client()
			resp, _, err := do(t, c, "GET", srv.URL)
			require.NoError(t, err)
			require.Equal(t, 503, resp.StatusCode, "steps before the resource play first")

			// 1st body: cut after 1000 bytes.
			resp, body, err := do(t, c, "GET", srv.URL)
			assert.Equal(t, tc.proto, resp.ProtoMajor)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, int64(len(data)), resp.ContentLength, "the full length is announced")
			readErrIsCut(t, err, tc.proto)
			assert.Equal(t, data[:1000], body)

			// A HEAD and a 416 send no body and do not count.
			resp, _, err = do(t, c, "HEAD", srv.URL)
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			resp, _, err = do(t, c, "GET", srv.URL, "Range", "bytes=999999-")
			require.NoError(t, err)
			assert.Equal(t, 416, resp.StatusCode)

			// 2nd: negative count, whole.
			resp, body, err = do(t, c, "GET", srv.URL, "Range", "bytes=1000-")
			require.NoError(t, err)
			assert.Equal(t, 206, resp.StatusCode)
			assert.Equal(t, data[1000:], body)

			// 3rd: cut after 0 bytes: the headers arrive, the body breaks.
			resp, body, err = do(t, c, "GET", srv.URL)
			readErrIsCut(t, err, tc.proto)
			assert.Empty(t, body)
			assert.Equal(t, 200, resp.StatusCode)

			// 4th: a 206 cut after 10 bytes of its own body.
			resp, body, err = do(t, c, "GET", srv.URL, "Range", "bytes=500-")
			readErrIsCut(t, err, tc.proto)
			assert.Equal(t, 206, resp.StatusCode)
			assert.Equal(t, data[500:510], body)

			// 5th: a count beyond the body; 6th: beyond the list. Whole.
			for range 2 {
				_, body, err = do(t, c, "GET", srv.URL)
				require.NoError(t, err)
				assert.Equal(t, data, body)
			}

			want := int64(1000 + len(data) - 1000 + 0 + 10 + 2*len(data))
			assert.Equal(t, want, res.BytesSent())
			var statuses []int
			var sent []int64
			var cut []bool
			for _, r := range res.Requests() {
				statuses = append(statuses, r.Status)
				sent = append(sent, r.Sent)
				cut = append(cut, r.Cut)
			}
			assert.Equal(t, []int{200, 200, 416, 206, 200, 206, 200, 200}, statuses)
			assert.Equal(t, []int64{1000, 0, 0, int64(len(data) - 1000), 0, 10, int64(len(data)), int64(len(data))}, sent)
			assert.Equal(t, []bool{true, false, false, false, true, true, false, false}, cut)
		})
	}
}

// A cut deep into a large body, read by a client that starts late and reads
// in odd-sized chunks: the send buffers are full when the server resets, and
// the client must still get exactly the bytes before the cut.
func TestResourceCutLargeBodyExact(t *testing.T) {
	noLeaks(t)
	data := content(4 << 20)
	const at = 3<<20 + 7
	res := h.NewResource(data).CutAfter(at)
	srv := h.NewServer(t, res)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	time.Sleep(50 * time.Millisecond) // let the server fill every buffer
	var got bytes.Buffer
	buf := make([]byte, 4093)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			readErrIsCut(t, err, 1)
			break
		}
	}
	assert.Equal(t, at, got.Len())
	assert.True(t, bytes.Equal(data[:at], got.Bytes()), "the bytes before the cut")
	assert.Equal(t, int64(at), res.BytesSent())
}

func TestResourceChangeAfter(t *testing.T) {
	v0, v1, v2 := []byte("version zero"), []byte("version one!"), []byte("two")
	res := h.NewResource(v0).ChangeAfter(3, v2).ChangeAfter(1, v1)
	srv := h.NewServer(t, res)
	c := srv.Client()

	r0, b0, err := do(t, c, "GET", srv.URL)
	require.NoError(t, err)
	assert.Equal(t, v0, b0)

	// The 2nd request resumes on the first ETag: the content changed, so the
	// whole new version comes back, never a slice of it.
	r1, b1, err := do(t, c, "GET", srv.URL, "Range", "bytes=4-", "If-Range", r0.Header.Get("ETag"))
	require.NoError(t, err)
	assert.Equal(t, 200, r1.StatusCode)
	assert.Equal(t, v1, b1)
	assert.NotEqual(t, r0.Header.Get("ETag"), r1.Header.Get("ETag"))
	lm0, _ := http.ParseTime(r0.Header.Get("Last-Modified"))
	lm1, _ := http.ParseTime(r1.Header.Get("Last-Modified"))
	assert.True(t, lm1.After(lm0), "%v after %v", lm1, lm0)

	// A resume on the new ETag gets its range; If-Match on the old fails.
	r2, b2, err := do(t, c, "GET", srv.URL, "Range", "bytes=8-", "If-Range", r1.Header.Get("ETag"))
	require.NoError(t, err)
	assert.Equal(t, 206, r2.StatusCode)
	assert.Equal(t, "one!", string(b2))

	r3, b3, err := do(t, c, "GET", srv.URL)
	require.NoError(t, err)
	assert.Equal(t, v2, b3)
	lm3, _ := http.ParseTime(r3.Header.Get("Last-Modified"))
	assert.True(t, lm3.After(lm1))
	r4, _, err := do(t, c, "GET", srv.URL, "If-Match", r1.Header.Get("ETag"))
	require.NoError(t, err)
	assert.Equal(t, 412, r4.StatusCode)

	var versions []int
	for _, r := range res.Requests() {
		versions = append(versions, r.Version)
	}
	assert.Equal(t, []int{0, 2, 2, 1, 1}, versions, "versions count ChangeAfter calls")
}

func TestResourceGzip(t *testing.T) {
	data := bytes.Repeat([]byte("compressible "), 1000)
	res := h.NewResource(data).Gzip()
	srv := h.NewServer(t, res)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(data)
	require.NoError(t, zw.Close())
	sum := sha256.Sum256(zipped.Bytes())
	zipTag := `"` + hex.EncodeToString(sum[:8]) + `"`

	t.Run("the Go client decompresses", func(t *testing.T) {
		resp, body, err := do(t, srv.Client(), "GET", srv.URL)
		require.NoError(t, err)
		assert.True(t, resp.Uncompressed)
		assert.Equal(t, data, body)
		assert.Empty(t, resp.Header.Get("Content-Encoding"))
		assert.Equal(t, zipTag, resp.Header.Get("ETag"), "the ETag of the compressed bytes")
	})
	t.Run("the caller's Accept-Encoding", func(t *testing.T) {
		resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Accept-Encoding", "gzip")
		require.NoError(t, err)
		assert.False(t, resp.Uncompressed)
		assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
		assert.Equal(t, int64(zipped.Len()), resp.ContentLength)
		assert.Equal(t, zipped.Bytes(), body)
	})
	t.Run("ranges are of the compressed bytes", func(t *testing.T) {
		resp, body, err := do(t, srv.Client(), "GET", srv.URL, "Range", "bytes=10-", "If-Range", zipTag)
		require.NoError(t, err)
		assert.Equal(t, 206, resp.StatusCode)
		assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
		assert.Equal(t, fmt.Sprintf("bytes 10-%d/%d", zipped.Len()-1, zipped.Len()), resp.Header.Get("Content-Range"))
		assert.Equal(t, zipped.Bytes()[10:], body)
	})
	t.Run("an identity resource has another ETag", func(t *testing.T) {
		plain := h.NewServer(t, h.NewResource(data))
		resp, _, err := do(t, plain.Client(), "HEAD", plain.URL)
		require.NoError(t, err)
		assert.NotEqual(t, zipTag, resp.Header.Get("ETag"))
		assert.Empty(t, resp.Header.Get("Content-Encoding"))
	})
	assert.Equal(t, int64(2*zipped.Len()+zipped.Len()-10), res.BytesSent())
}

func TestResourceConcurrent(t *testing.T) {
	data := content(50_000)
	res := h.NewResource(data).CutAfter(100, 200, 300)
	srv := h.NewServer(t, res)
	c := srv.Client()
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got int64
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", i*1000))
			resp, err := c.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			assert.Equal(t, data[i*1000:i*1000+len(b)], b)
			if err == nil {
				assert.Len(t, b, len(data)-i*1000)
			}
			mu.Lock()
			got += int64(len(b))
			mu.Unlock()
		})
	}
	wg.Wait()
	reqs := res.Requests()
	require.Len(t, reqs, n)
	cuts := 0
	var sent int64
	for _, r := range reqs {
		sent += r.Sent
		if r.Cut {
			cuts++
		}
	}
	assert.Equal(t, 3, cuts)
	assert.Equal(t, got, sent)
	assert.Equal(t, got, res.BytesSent())
}

func TestResourceAsHandler(t *testing.T) {
	noLeaks(t)
	data := content(5000)
	res := h.NewResource(data).CutAfter(123)
	srv := httptest.NewServer(res)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	_, body, err := do(t, c, "GET", srv.URL)
	readErrIsCut(t, err, 1)
	assert.Equal(t, data[:123], body)
	_, body, err = do(t, c, "GET", srv.URL)
	require.NoError(t, err)
	assert.Equal(t, data, body)
}

// A download that resumes where the connection broke, checking that every
// resume continues the same version (If-Range, then a 206).
func ExampleResource() {
	data := bytes.Repeat([]byte("0123456789"), 10_000) // 100 kB
	res := h.NewResource(data).CutAfter(30_000, 50_000)
	srv := h.Start(res)
	defer srv.Close()

	var got []byte
	var etag string
	for {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if len(got) > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(got)))
			req.Header.Set("If-Range", etag)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		if len(got) > 0 && resp.StatusCode != http.StatusPartialContent {
			resp.Body.Close()
			fmt.Println("cannot resume:", resp.Status)
			return
		}
		etag = resp.Header.Get("ETag")
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, b...)
		fmt.Println(resp.StatusCode, resp.Header.Get("Content-Range"), len(b), err != nil)
		if err == nil {
			break
		}
	}
	fmt.Println(bytes.Equal(got, data), res.BytesSent())
	// Output:
	// 200  30000 true
	// 206 bytes 30000-99999/100000 50000 true
	// 206 bytes 80000-99999/100000 20000 false
	// true 100000
}
