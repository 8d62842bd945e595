package httptest_helpers_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

func get(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	require.NoError(t, err)
	return c.Do(req)
}

func TestScriptPlaysInOrderAndLastRepeats(t *testing.T) {
	srv := h.NewServer(t, h.Status(503).Header("Retry-After", "1").Body("busy"), h.Status(200).Body("ok"))
	c := srv.Client()
	want := []struct {
		code int
		body string
	}{{503, "busy"}, {200, "ok"}, {200, "ok"}}
	for _, w := range want {
		resp, err := get(t, c, srv.URL+"/p?q=1")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, w.code, resp.StatusCode)
		assert.Equal(t, w.body, string(b))
		if w.code == 503 {
			assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		}
	}
	assert.Equal(t, 3, srv.Hits())
	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "GET", reqs[0].Method)
	assert.Equal(t, "/p?q=1", reqs[0].Path)
}

func TestRequestsRecordBodies(t *testing.T) {
	srv := h.NewServer(t)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL, strings.NewReader("payload"))
	req.Header.Set("X-Test", "v")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	r := srv.Requests()[0]
	assert.Equal(t, "payload", string(r.Body))
	assert.Equal(t, "v", r.Header.Get("X-Test"))
	assert.NoError(t, r.Err)
}

func TestResetSendsRST(t *testing.T) {
	srv := h.NewServer(t, h.Reset())
	tr := srv.Transport().Clone()
	tr.DisableKeepAlives = true
	_, err := get(t, &http.Client{Transport: tr}, srv.URL)
	require.Error(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF), "%v", err)
}

func TestDropClosesWithoutResponse(t *testing.T) {
	srv := h.NewServer(t, h.Drop())
	tr := srv.Transport().Clone()
	tr.DisableKeepAlives = true
	_, err := get(t, &http.Client{Transport: tr}, srv.URL)
	require.Error(t, err)
	assert.ErrorIs(t, err, io.EOF)
}

func TestHangBlocksUntilClientGivesUp(t *testing.T) {
	srv := h.NewServer(t, h.Hang())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	_, err := srv.Client().Do(req)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestTruncatePromisesMore(t *testing.T) {
	srv := h.NewServer(t, h.Truncate(5))
	resp, err := get(t, srv.Client(), srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, int64(105), resp.ContentLength)
	b, err := io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, "xxxxx", string(b))
}

func TestDelay(t *testing.T) {
	srv := h.NewServer(t, h.Delay(20*time.Millisecond, h.Status(204)))
	start := time.Now()
	resp, err := get(t, srv.Client(), srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 204, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
}

func TestTLSAndHTTP2(t *testing.T) {
	tlsSrv := h.NewTLSServer(t, h.Status(200))
	resp, err := get(t, tlsSrv.Client(), tlsSrv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.NotNil(t, resp.TLS)
	assert.Equal(t, 1, resp.ProtoMajor)

	h2 := h.NewHTTP2Server(t, h.Reset(), h.Status(200))
	_, err = get(t, h2.Client(), h2.URL)
	require.Error(t, err, "Reset over HTTP/2 resets the stream")
	resp, err = get(t, h2.Client(), h2.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 2, resp.ProtoMajor)
	assert.Equal(t, 1, h2.Connections(), "a stream reset leaves the connection up")
}

func TestOneOfPicksEachStep(t *testing.T) {
	srv := h.NewServer(t, h.OneOf(h.Status(201), h.Status(202)))
	seen := map[int]int{}
	for range 64 {
		resp, err := get(t, srv.Client(), srv.URL)
		require.NoError(t, err)
		resp.Body.Close()
		seen[resp.StatusCode]++
	}
	assert.Len(t, seen, 2, "both steps played: %v", seen)
	assert.Equal(t, 64, seen[201]+seen[202])
}
