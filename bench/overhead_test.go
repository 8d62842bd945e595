package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// memBase answers 200 from memory, reading and closing the request body as
// net/http does; it allocates nothing itself.
type memBase struct{ resp http.Response }

func (m *memBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	resp := m.resp
	return &resp, nil
}

// rewindBody is a reusable body: Reset rewinds it.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// opaqueBody hides everything but Read and Close: no length, no GetBody.
type opaqueBody struct{ r io.Reader }

func (o *opaqueBody) Read(p []byte) (int, error) { return o.r.Read(p) }
func (*opaqueBody) Close() error                 { return nil }

type requestCase struct {
	name string
	make func(url string) func() *http.Request
}

var payload = bytes.Repeat([]byte("p"), 4096)

// requestCases build a fresh request per call, reusing one body buffer, so
// that the benchmark measures the transports rather than the setup.
var requestCases = []requestCase{
	{"GET", func(url string) func() *http.Request {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
		return func() *http.Request { return req }
	}},
	{"PUT4KiB_GetBody", func(url string) func() *http.Request {
		req, _ := http.NewRequestWithContext(context.Background(), "PUT", url, nil)
		body := &rewindBody{}
		req.GetBody = func() (io.ReadCloser, error) { body.Reset(payload); return body, nil }
		req.ContentLength = int64(len(payload))
		return func() *http.Request { req.Body, _ = req.GetBody(); return req }
	}},
	{"PUT4KiB_opaque", func(url string) func() *http.Request {
		req, _ := http.NewRequestWithContext(context.Background(), "PUT", url, nil)
		rb := &rewindBody{}
		body := &opaqueBody{r: rb}
		return func() *http.Request { rb.Reset(payload); req.Body = body; req.GetBody = nil; return req }
	}},
}

// BenchmarkOverhead is the success path over an in-memory base: what each
// library adds to a request that succeeds at once.
func BenchmarkOverhead(b *testing.B) {
	for _, rc := range requestCases {
		for _, p := range Peers {
			b.Run("case="+rc.name+"/peer="+p.Name, func(b *testing.B) {
				base := &memBase{resp: http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody}}
				rt := p.New(base, Policy{Wait: time.Millisecond})
				next := rc.make("http://svc.test/x")
				b.ReportAllocs()
				for b.Loop() {
					resp, err := rt.RoundTrip(next())
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("%v %v", resp, err)
					}
					resp.Body.Close()
				}
			})
		}
	}
}

// BenchmarkLoopback is the success path end to end, through a real
// connection to an httptest server on 127.0.0.1.
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	for _, rc := range requestCases[:2] {
		for _, p := range Peers {
			b.Run("case="+rc.name+"/peer="+p.Name, func(b *testing.B) {
				base := cleanhttp.DefaultPooledTransport()
				defer base.CloseIdleConnections()
				rt := p.New(base, Policy{Wait: time.Millisecond})
				next := rc.make(srv.URL)
				b.ReportAllocs()
				for b.Loop() {
					resp, err := rt.RoundTrip(next())
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("%v %v", resp, err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	}
}
