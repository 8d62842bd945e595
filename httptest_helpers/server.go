// Package httptest_helpers is a scripted fault server for tests of HTTP
// clients: each hit of the server plays the next Step of a script (the
// last step repeats), so a test can say "503, then a connection reset,
// then 200" and check what the client did. It imports nothing of package
// retry and can test any client.
//
//	srv := httptest_helpers.NewServer(t,
//		httptest_helpers.Status(503).Header("Retry-After", "1"),
//		httptest_helpers.Reset(),
//		httptest_helpers.Status(200).Body("ok"))
//	resp, err := client.Get(srv.URL)
//	// srv.Hits() == 3
//
// Servers listen on loopback only and are closed by tb.Cleanup.
package httptest_helpers //nolint:revive // the user's layout names the package so

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Server is a running fault server.
type Server struct {
	// URL is the server's base URL, such as http://127.0.0.1:43213.
	URL string

	srv   *httptest.Server
	steps []Step
	done  chan struct{} // closed when the test ends: hanging steps return

	hits  atomic.Int64
	conns atomic.Int64
	mu    sync.Mutex
	reqs  []Request
}

// Request is what the server received on one hit.
type Request struct {
	Method string
	// Path is the request's path and query, as sent.
	Path   string
	Proto  string
	Header http.Header
	// Body holds every byte of the request body the server read; Err is the
	// error that ended the read, if it was not a clean end of body.
	Body []byte
	Err  error
}

// NewServer starts a plain HTTP/1.1 server on 127.0.0.1 that plays steps,
// one per hit, the last one repeating (no steps: every hit gets 200). It is
// closed when the test ends.
func NewServer(tb testing.TB, steps ...Step) *Server {
	tb.Helper()
	s := Start(steps...)
	tb.Cleanup(s.Close)
	return s
}

// Start is NewServer outside a test (a demo, a command): the caller must
// call Close.
func Start(steps ...Step) *Server {
	s := newServer(steps)
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// NewTLSServer is NewServer over HTTPS with a self-signed certificate;
// Client and Transport trust it.
func NewTLSServer(tb testing.TB, steps ...Step) *Server {
	tb.Helper()
	s := newServer(steps)
	s.srv.StartTLS()
	s.started(tb)
	return s
}

// NewHTTP2Server is NewTLSServer speaking HTTP/2; Client and Transport
// use HTTP/2. Reset and Drop reset the stream (RST_STREAM) instead of the
// TCP connection.
func NewHTTP2Server(tb testing.TB, steps ...Step) *Server {
	tb.Helper()
	s := newServer(steps)
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	s.started(tb)
	return s
}

func newServer(steps []Step) *Server {
	if len(steps) == 0 {
		steps = []Step{Status(http.StatusOK)}
	}
	s := &Server{steps: steps, done: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Faults are the point here: keep the server's complaints about them
	// (handshake failures, aborted handlers) out of the test output.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	return s
}

func (s *Server) started(tb testing.TB) {
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
}

// Close ends hanging steps, closes every connection and stops the server.
// NewServer's servers are closed for you; call it at most once.
func (s *Server) Close() {
	close(s.done)
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Hits returns how many requests the server has received.
func (s *Server) Hits() int { return int(s.hits.Load()) }

// Connections returns how many connections clients have opened.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Requests returns every request received so far, in the order they
// arrived.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Client returns an *http.Client for the server (trusting its certificate,
// speaking HTTP/2 where the server does).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Transport returns the *http.Transport of Client, for use as the base of
// a retrying transport.
func (s *Server) Transport() *http.Transport { return s.srv.Client().Transport.(*http.Transport) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	n := s.hits.Add(1)
	body, err := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{
		Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto,
		Header: r.Header.Clone(), Body: body, Err: err,
	})
	s.mu.Unlock()
	step := s.steps[min(int(n)-1, len(s.steps)-1)]
	step.serve(s, w, r)
}
