package httptest_helpers

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// A Step is what the server does on one hit. The server has read the whole
// request body before a step runs.
type Step interface {
	serve(s *Server, w http.ResponseWriter, r *http.Request)
}

// StatusStep answers with a status code, headers and a body. Build it with
// Status and chain Header and Body.
type StatusStep struct {
	code   int
	header http.Header
	body   string
}

// Status answers with code, no body, and the headers and body added with
// Header and Body.
func Status(code int) *StatusStep { return &StatusStep{code: code, header: http.Header{}} }

// Header adds a response header and returns the step.
func (st *StatusStep) Header(key, value string) *StatusStep {
	st.header.Add(key, value)
	return st
}

// Body sets the response body and returns the step.
func (st *StatusStep) Body(s string) *StatusStep {
	st.body = s
	return st
}

func (st *StatusStep) serve(_ *Server, w http.ResponseWriter, _ *http.Request) {
	for k, v := range st.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(st.body)))
	w.WriteHeader(st.code)
	_, _ = w.Write([]byte(st.body))
}

type resetStep struct{}

// Reset reads the request, then resets the connection (a TCP RST, through
// SetLinger(0)) without answering. Over HTTP/2 it resets the stream.
func Reset() Step { return resetStep{} }

func (resetStep) serve(_ *Server, w http.ResponseWriter, r *http.Request) {
	conn, ok := hijack(w, r)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2: RST_STREAM
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

type dropStep struct{}

// Drop closes the connection without a response (a clean FIN). Over HTTP/2
// it resets the stream.
func Drop() Step { return dropStep{} }

func (dropStep) serve(_ *Server, w http.ResponseWriter, r *http.Request) {
	conn, ok := hijack(w, r)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

type hangStep struct{}

// Hang never answers: it blocks until the client gives up (or the test
// ends).
func Hang() Step { return hangStep{} }

func (hangStep) serve(s *Server, _ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

type truncateStep struct{ n int }

// Truncate answers 200 with a Content-Length of n+100, sends n bytes of
// body ('x'), and closes the connection.
func Truncate(n int) Step { return truncateStep{n} }

func (st truncateStep) serve(_ *Server, w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", strconv.Itoa(st.n+100))
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, st.n)
	for i := range buf {
		buf[i] = 'x'
	}
	_, _ = w.Write(buf)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler) // closes the connection (or resets the stream)
}

type delayStep struct {
	d    time.Duration
	next Step
}

// Delay waits d (or until the client gives up), then plays step.
func Delay(d time.Duration, step Step) Step { return delayStep{d, step} }

func (st delayStep) serve(s *Server, w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(st.d)
	defer t.Stop()
	select {
	case <-t.C:
		st.next.serve(s, w, r)
	case <-r.Context().Done():
	case <-s.done:
	}
}

// Func runs f as the step, for anything the other steps do not cover.
func Func(f http.HandlerFunc) Step { return funcStep(f) }

type funcStep http.HandlerFunc

func (f funcStep) serve(_ *Server, w http.ResponseWriter, r *http.Request) { f(w, r) }

// hijack takes the connection over from an HTTP/1 server; it reports false
// for HTTP/2, which cannot be hijacked.
func hijack(w http.ResponseWriter, r *http.Request) (net.Conn, bool) {
	if r.ProtoMajor != 1 {
		return nil, false
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		return nil, false
	}
	conn, _, err := h.Hijack()
	if err != nil {
		return nil, false
	}
	return conn, true
}

type oneOfStep []Step

// OneOf plays one of steps chosen at random on each hit, for chaos tests.
func OneOf(steps ...Step) Step { return oneOfStep(steps) }

func (st oneOfStep) serve(s *Server, w http.ResponseWriter, r *http.Request) {
	st[rand.IntN(len(st))].serve(s, w, r)
}
