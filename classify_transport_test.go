package retry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
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

// Tests of the default classifier driven through a Transport, most of them
// over loopback connections.

// classified is a Classifier that records what Classify said of each
// attempt.
type classified struct {
	mu   sync.Mutex
	cats []string
	errs []string // the errors classified, for failure messages
}

func (c *classified) option() Option {
	return WithClassifier(func(resp *http.Response, err error) Category {
		cat := Classify(resp, err)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.cats = append(c.cats, cat.String())
		if err != nil {
			c.errs = append(c.errs, fmt.Sprintf("%s: %v", cat, err))
		}
		return cat
	})
}

// errors returns what was classified of each failed attempt so far.
func (c *classified) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// names returns the categories of the attempts so far, in order.
func (c *classified) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.cats...)
}

func TestTransportPostNotRetriedAfterNoRouteOnRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Linux reports EHOSTUNREACH on an established connection too: the
		// POST was sent and may have been processed.
		readErr := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.EHOSTUNREACH)}
		base := &fakeBase{script: []reply{fail(readErr), respond(200)}}
		var c classified
		_, err := NewTransport(base, append(fast, c.option())...).RoundTrip(newReq(t, "POST", "http://svc/charge", strings.NewReader("x")))
		require.ErrorIs(t, err, syscall.EHOSTUNREACH)
		assert.Equal(t, 1, base.Calls(), "a POST whose bytes were sent is not retried")
		assert.Equal(t, []string{"connection_error"}, c.names())

		// The same errno from the dial: nothing was sent.
		dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
		base = &fakeBase{script: []reply{fail(dialErr), respond(200)}}
		resp, err := NewTransport(base, fast...).RoundTrip(newReq(t, "POST", "http://svc/charge", strings.NewReader("x")))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 2, base.Calls(), "a POST that was never sent is retried")
	})
}

func TestClassifyRealProxyDialError(t *testing.T) {
	// net/http wraps the failed dial of a proxy in an *net.OpError with Op
	// "proxyconnect".
	proxyURL := &url.URL{Scheme: "http", Host: closedAddr(t)}
	base := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer base.CloseIdleConnections()
	_, err := base.RoundTrip(newReq(t, "GET", "https://origin.invalid/", nil))
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, "proxyconnect", op.Op)
	assert.Equal(t, DialError.String(), Classify(nil, err).String(), "%v", err)
}

func TestTransportTLSAlertIsFatal(t *testing.T) {
	// A server that requires a client certificate, which the client has
	// not, ends the handshake with an alert. Under TLS 1.3 with HTTP/1.1
	// the alert arrives when the client reads the response; under TLS 1.2,
	// during the handshake. (Not TLS 1.3 with HTTP/2: there the client writes
	// twice, the preface and then the request, and the second write may
	// fail with EPIPE before the alert is read: a ConnectionError, rightly
	// retried, since the alert is nowhere in it.)
	for name, tc := range map[string]struct {
		maxVersion uint16
		http2      bool
		text       string
	}{
		"TLS 1.3 HTTP/1.1": {tls.VersionTLS13, false, "remote error: tls: certificate required"},
		"TLS 1.2 HTTP/1.1": {tls.VersionTLS12, false, "remote error: tls: "},
		"TLS 1.2 HTTP/2":   {tls.VersionTLS12, true, "remote error: tls: "},
	} {
		t.Run(name, func(t *testing.T) {
			var handshakes atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			srv.EnableHTTP2 = tc.http2
			srv.TLS = &tls.Config{
				ClientAuth: tls.RequireAnyClientCert,
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
					handshakes.Add(1)
					return nil, nil
				},
			}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			base := srv.Client().Transport.(*http.Transport).Clone()
			base.TLSClientConfig.MaxVersion = tc.maxVersion
			defer base.CloseIdleConnections()

			var c classified
			_, err := NewTransport(base, append(quick, c.option())...).RoundTrip(newReq(t, "GET", srv.URL, nil))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.text)
			assert.Equal(t, []string{"fatal"}, c.names(), "one attempt, fatal: %q", c.errors())
			assert.Equal(t, int32(1), handshakes.Load(), "the server saw one handshake")
		})
	}
}

// connectProxy is a loopback HTTP proxy that answers CONNECT requests with
// the statuses in refusals, one per CONNECT, and then opens tunnels.
type connectProxy struct {
	*httptest.Server
	refusals []int
	connects atomic.Int32
	tunnels  sync.WaitGroup
}

func newConnectProxy(t *testing.T, refusals ...int) *connectProxy {
	p := &connectProxy{refusals: refusals}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.Start()
	t.Cleanup(func() {
		p.Close()
		p.tunnels.Wait()
	})
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	if n := int(p.connects.Add(1)); n <= len(p.refusals) {
		w.WriteHeader(p.refusals[n-1])
		return
	}
	origin, err := net.Dial("tcp", r.Host)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		origin.Close()
		return
	}
	_, _ = rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	_ = rw.Flush()
	p.tunnels.Add(2)
	go p.pipe(origin, rw.Reader, client)
	go p.pipe(client, origin, origin)
}

// pipe copies src to dst and then closes both ends of the tunnel.
func (p *connectProxy) pipe(dst net.Conn, src io.Reader, other net.Conn) {
	defer p.tunnels.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	other.Close()
}

func TestTransportProxyConnectRefusalIsRetried(t *testing.T) {
	for _, tc := range []struct {
		method string // a POST too: the request never left the client
		status int
		want   Category
	}{
		{"GET", http.StatusServiceUnavailable, ServerError},
		{"GET", http.StatusBadGateway, ServerError},
		{"GET", http.StatusTooManyRequests, Throttled},
		{"POST", http.StatusBadGateway, ServerError},
		{"POST", http.StatusServiceUnavailable, ServerError},
	} {
		t.Run(tc.method+" "+http.StatusText(tc.status), func(t *testing.T) {
			origin := h.NewTLSServer(t, h.Status(200).Body("ok"))
			proxy := newConnectProxy(t, tc.status)
			proxyURL, err := url.Parse(proxy.URL)
			require.NoError(t, err)
			base := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: origin.Transport().TLSClientConfig}
			defer base.CloseIdleConnections()

			var c classified
			resp, err := NewTransport(base, append(quick, c.option())...).RoundTrip(newReq(t, tc.method, origin.URL+"/x", strings.NewReader("payload")))
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, "ok", string(body))
			assert.Equal(t, int32(2), proxy.connects.Load(), "refused once, then tunnelled")
			assert.Equal(t, 1, origin.Hits())
			assert.Equal(t, []string{tc.want.String(), "success"}, c.names())
		})
	}
}

func TestTransportProxyConnectRefusalStaysFatal(t *testing.T) {
	// 407 or 501 from a proxy would come again.
	origin := h.NewTLSServer(t, h.Status(200))
	proxy := newConnectProxy(t, http.StatusProxyAuthRequired, http.StatusProxyAuthRequired, http.StatusProxyAuthRequired)
	proxyURL, err := url.Parse(proxy.URL)
	require.NoError(t, err)
	base := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: origin.Transport().TLSClientConfig}
	defer base.CloseIdleConnections()
	var c classified
	_, err = NewTransport(base, append(quick, c.option())...).RoundTrip(newReq(t, "GET", origin.URL, nil))
	require.Error(t, err)
	assert.Equal(t, []string{"fatal"}, c.names())
	assert.Equal(t, int32(1), proxy.connects.Load())
}

// breakableConn is a client connection whose writes fail with EPIPE once
// broken is set, as when the peer went away.
type breakableConn struct {
	net.Conn
	broken *atomic.Bool
}

func (c *breakableConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", syscall.EPIPE)}
	}
	return c.Conn.Write(p)
}

func TestTransportHTTP2SiblingBreakIsRetried(t *testing.T) {
	// GET a is in flight (its handler blocks) when the connection's writes
	// start failing; GET b on the same connection fails to write its
	// headers, and net/http then closes the connection under a, which fails
	// with "client connection force closed". Both are retried on a new
	// connection and succeed.
	inFlight := make(chan struct{})
	done := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			close(inFlight)
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	defer close(done)

	var (
		mu     sync.Mutex
		breaks []*atomic.Bool // one per dialled connection
	)
	base := srv.Client().Transport.(*http.Transport).Clone()
	base.ForceAttemptHTTP2 = true
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		broken := new(atomic.Bool)
		mu.Lock()
		breaks = append(breaks, broken)
		mu.Unlock()
		return &breakableConn{Conn: conn, broken: broken}, nil
	}
	defer base.CloseIdleConnections()

	var c classified
	tr := NewTransport(base, WithSleepTime(time.Millisecond), discard, c.option())
	get := func(path string, proto *string) error {
		resp, err := tr.RoundTrip(newReq(t, "GET", srv.URL+path, nil))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		*proto = resp.Proto
		if err == nil && string(body) != "ok "+path {
			err = errors.New("unexpected body " + string(body))
		}
		return err
	}

	var wg sync.WaitGroup
	var errA, errB error
	var protoA, protoB string
	wg.Go(func() { errA = get("/a", &protoA) })
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("GET a never reached the server")
	}
	mu.Lock()
	require.Len(t, breaks, 1, "one connection so far")
	breaks[0].Store(true)
	mu.Unlock()
	errB = get("/b", &protoB)
	wg.Wait()

	require.NoError(t, errA, "GET a, in flight when the connection broke")
	require.NoError(t, errB, "GET b, whose write broke the connection")
	assert.Equal(t, "HTTP/2.0", protoA)
	assert.Equal(t, "HTTP/2.0", protoB)
	assert.ElementsMatch(t, []string{"connection_error", "connection_error", "success", "success"}, c.names(), "each GET retried once")
	errs := strings.Join(c.errors(), "\n")
	assert.Contains(t, errs, "connection_error: http2: client connection force closed via ClientConn.Close", "GET a")
	assert.Contains(t, errs, "broken pipe", "GET b")
}

func TestTransportSpuriousCancelIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// net/http failed the attempt with context.Canceled while neither
		// the caller's context nor the attempt's is done.
		base := &fakeBase{script: []reply{fail(context.Canceled), respond(200)}}
		var c classified
		resp, err := NewTransport(base, append(fast, c.option())...).RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 2, base.Calls())
		assert.Equal(t, []string{"connection_error", "success"}, c.names())

		// The caller's own cancel is still final.
		ctx, cancel := context.WithCancel(t.Context())
		base = &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
			cancel()
			return nil, context.Canceled
		}, respond(200)}}
		var c2 classified
		_, err = NewTransport(base, append(fast, c2.option())...).RoundTrip(newReq(t, "GET", "http://svc/", nil).WithContext(ctx))
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, base.Calls(), "not retried")
		assert.Empty(t, c2.names(), "decided from the context, not by the classifier")
	})
}
