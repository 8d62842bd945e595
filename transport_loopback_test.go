package retry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	h "github.com/retrykit/retry/httptest_helpers"
)

// quick is the loopback policy: real waits of 1ms and 2ms.
var quick = []Option{WithSleepTime(time.Millisecond), discard}

func TestLoopbackRetriesThroughClient(t *testing.T) {
	srv := h.NewServer(t, h.Status(503).Body("busy"), h.Reset(), h.Drop(), h.Status(200).Body("ok"))
	client := &http.Client{Transport: NewTransport(srv.Transport(), append(quick, WithMaxAttempts(4))...)}
	resp, err := client.Get(srv.URL + "/x")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "ok", string(body))
	assert.Equal(t, 4, srv.Hits())
}

func TestLoopbackTruncatedBodyIsTheCallers(t *testing.T) {
	// Truncation shows up while the caller reads the returned body: the
	// transport has handed it over by then and does not retry.
	srv := h.NewServer(t, h.Truncate(10))
	resp, err := NewClient(quick...).Get(srv.URL)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, 1, srv.Hits())
}

func TestLoopbackConnectionRefusedThroughClient(t *testing.T) {
	addr := closedAddr(t)
	var cats []Category
	client := NewClient(append(quick, WithOnRetry(func(e Event) { cats = append(cats, e.Category) }))...)
	resp, err := client.Get("http://" + addr + "/")
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "reachable through *url.Error and *retry.Error")
	var re *Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 3, re.Attempts)
	assert.Equal(t, []Category{DialError, DialError}, cats)
}

func TestLoopbackPostResetIsNotRetried(t *testing.T) {
	srv := h.NewServer(t, h.Reset(), h.Status(200))
	resp, err := NewClient(quick...).Post(srv.URL, "text/plain", strings.NewReader("charge card"))
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err)
	assert.Equal(t, 1, srv.Hits(), "the server may have processed the POST")
}

func TestLoopbackHeaderTimeoutIsRetried(t *testing.T) {
	srv := h.NewServer(t, h.Hang(), h.Status(200))
	base := srv.Transport().Clone()
	base.ResponseHeaderTimeout = 100 * time.Millisecond
	resp, err := NewTransport(base, append(quick, WithMaxAttempts(5))...).RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.GreaterOrEqual(t, srv.Hits(), 2, "the hung attempt was retried")
}

func TestLoopbackAttemptTimeout(t *testing.T) {
	srv := h.NewServer(t, h.Hang(), h.Status(200).Body("late but fine"))
	client := &http.Client{Transport: NewTransport(srv.Transport(), append(quick, WithAttemptTimeout(100*time.Millisecond), WithMaxAttempts(5))...)}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "late but fine", string(body))
	assert.GreaterOrEqual(t, srv.Hits(), 2, "the hung attempt was retried")
}

func TestLoopbackClientTimeoutBoundsAllAttempts(t *testing.T) {
	srv := h.NewServer(t, h.Status(503))
	client := &http.Client{
		Transport: NewTransport(srv.Transport(), WithSleepTime(time.Second), discard),
		Timeout:   500 * time.Millisecond,
	}
	start := time.Now()
	resp, err := client.Get(srv.URL)
	elapsed := time.Since(start)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode, "the last response, returned at once")
	assert.Less(t, elapsed, 500*time.Millisecond, "the 1s wait would pass Client.Timeout: no wait")
	assert.Equal(t, 1, srv.Hits())
}

func TestLoopbackConnectionReusedAcrossRetries(t *testing.T) {
	srv := h.NewServer(t, h.Status(503).Body(strings.Repeat("e", 2000)), h.Status(503).Body("again"), h.Status(200).Body("ok"))
	tr := NewTransport(srv.Transport(), quick...)
	resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 3, srv.Hits())
	assert.Equal(t, 1, srv.Connections(), "drained 503 bodies let the connection be reused")
}

func TestLoopbackTLSCertificateIsFatal(t *testing.T) {
	srv := h.NewTLSServer(t, h.Status(200))
	// A transport that does not trust the test certificate.
	var cats []Category
	tr := NewTransport(nil, append(quick, WithOnRetry(func(e Event) { cats = append(cats, e.Category) }))...)
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	require.Error(t, err)
	assert.Empty(t, cats, "a certificate error is not retried")
	assert.Equal(t, Fatal, Classify(nil, err))
	assert.Zero(t, srv.Hits())
}

func TestLoopbackHTTP2(t *testing.T) {
	srv := h.NewHTTP2Server(t, h.Status(503), h.Reset(), h.Status(200).Body("h2"))
	resp, err := (&http.Client{Transport: NewTransport(srv.Transport(), quick...)}).Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "h2", string(body))
	assert.Equal(t, 3, srv.Hits())
}

func TestLoopbackSharedTransportUnderLoad(t *testing.T) {
	// Registered first, so it runs after the server's own cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	// One Transport, 64 goroutines, a server that fails every other hit;
	// every attempt's body is checked against the hash sent with it.
	faulty := h.NewServer(t, h.Status(503), h.Status(200), h.Reset(), h.Status(200))
	tr := NewTransport(nil, append(quick, WithMaxAttempts(8))...)

	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 5 {
				payload := bytes.Repeat([]byte{byte(g), byte(i)}, 1000+g*37+i)
				sum := sha256.Sum256(payload)
				var body io.Reader = bytes.NewReader(payload) // with GetBody
				if (g+i)%2 == 0 {
					body = &opaqueBody{Reader: bytes.NewReader(payload)} // buffered
				}
				req := newReq(t, "PUT", faulty.URL, body)
				req.Header.Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
				resp, err := tr.RoundTrip(req)
				if assert.NoError(t, err) {
					assert.Equal(t, 200, resp.StatusCode)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	reqs := faulty.Requests()
	assert.Greater(t, len(reqs), 64*5, "some attempts were retried")
	for _, r := range reqs {
		sum := sha256.Sum256(r.Body)
		require.Equal(t, r.Header.Get("X-Body-Sha256"), hex.EncodeToString(sum[:]), "every attempt carries the exact body")
	}
	tr.CloseIdleConnections()
}

func TestLoopbackBodyReplayedOverTheWire(t *testing.T) {
	srv := h.NewServer(t, h.Status(500), h.Reset(), h.Status(201))
	payload := strings.Repeat("payload-", 5000)
	req := newReq(t, "PUT", srv.URL, &opaqueBody{Reader: strings.NewReader(payload)})
	resp, err := NewTransport(srv.Transport(), quick...).RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode)
	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		assert.Equal(t, len(payload), len(r.Body))
		assert.True(t, string(r.Body) == payload)
	}
}
