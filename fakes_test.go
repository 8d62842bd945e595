package retry

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBase is an in-memory RoundTripper that plays a script of replies, one
// per call, the last one repeating. Like net/http, it reads and closes the
// request body on every path.
type fakeBase struct {
	script []reply

	mu     sync.Mutex
	calls  int
	reqs   []*http.Request
	bodies [][]byte
	times  []time.Time
}

// reply builds one response or error.
type reply func(*http.Request) (*http.Response, error)

func respond(code int, headers ...string) reply {
	return func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(headers); i += 2 {
			h.Set(headers[i], headers[i+1])
		}
		return &http.Response{StatusCode: code, Status: strconv.Itoa(code) + " " + http.StatusText(code),
			Header: h, Body: newTrackedBody(64), Request: r}, nil
	}
}

func fail(err error) reply {
	return func(*http.Request) (*http.Response, error) { return nil, err }
}

func (f *fakeBase) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	f.mu.Lock()
	f.calls++
	f.reqs = append(f.reqs, r)
	f.bodies = append(f.bodies, body)
	f.times = append(f.times, time.Now())
	rep := f.script[min(f.calls, len(f.script))-1]
	f.mu.Unlock()
	return rep(r)
}

func (f *fakeBase) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// gaps returns the time between consecutive calls.
func (f *fakeBase) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(f.times); i++ {
		out = append(out, f.times[i].Sub(f.times[i-1]))
	}
	return out
}

// trackedBody is a response or request body that counts bytes read and
// closes.
type trackedBody struct {
	r      io.Reader
	read   atomic.Int64
	closes atomic.Int32
}

func newTrackedBody(n int) *trackedBody {
	return &trackedBody{r: bytes.NewReader(bytes.Repeat([]byte("b"), n))}
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *trackedBody) Close() error {
	b.closes.Add(1)
	return nil
}

// opaqueBody hides every method but Read and Close of a reader, so that
// net/http cannot know its length and there is no GetBody.
type opaqueBody struct {
	io.Reader
	closes atomic.Int32
}

func (o *opaqueBody) Close() error {
	o.closes.Add(1)
	return nil
}

// closedAddr returns a loopback address where nothing listens: a dial to
// it is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// slowBase answers after the next of delays (the last one repeating), unless
// the request's context ends first; its response body yields chunks KiB with
// a pause before each KiB and fails once the request's context has ended, as
// net/http's does. It is for one goroutine at a time.
type slowBase struct {
	delays []time.Duration
	calls  int
	chunks int
	pause  time.Duration
}

func (s *slowBase) RoundTrip(r *http.Request) (*http.Response, error) {
	d := s.delays[min(s.calls, len(s.delays)-1)]
	s.calls++
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: &slowBody{ctx: r.Context(), left: s.chunks * 1024, pause: s.pause}}, nil
}

// slowBody yields at most 1 KiB a read, after a pause, until its context ends.
type slowBody struct {
	ctx   context.Context
	left  int // bytes
	pause time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.pause)
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n := min(len(p), 1024, b.left)
	b.left -= n
	return copy(p, bytes.Repeat([]byte("z"), n)), nil
}

func (b *slowBody) Close() error { return nil }

// rwBody is a read-write body, like a 101 Switching Protocols response's,
// that records what is written and whether it was closed.
type rwBody struct {
	io.Reader
	written bytes.Buffer
	closed  bool
}

func (b *rwBody) Write(p []byte) (int, error) { return b.written.Write(p) }
func (b *rwBody) Close() error                { b.closed = true; return nil }
