package retry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// memBase answers 200 from memory, reading and closing the request body
// as net/http does. It allocates nothing itself.
type memBase struct{ resp http.Response }

func newMemBase() *memBase {
	return &memBase{resp: http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody}}
}

func (m *memBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &m.resp, nil
}

// rewindBody is a reusable request body for benchmarks.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchCase is one request shape of the success-path benchmark.
type benchCase struct {
	name string
	// prepare readies req for one more round trip.
	prepare func(req *http.Request)
	req     *http.Request
}

func benchCases() []benchCase {
	payload := bytes.Repeat([]byte("p"), 4096)
	get, _ := http.NewRequestWithContext(context.Background(), "GET", "http://svc/x", nil)

	withGetBody, _ := http.NewRequestWithContext(context.Background(), "PUT", "http://svc/x", nil)
	gb := &rewindBody{}
	withGetBody.GetBody = func() (io.ReadCloser, error) { gb.Reset(payload); return gb, nil }
	withGetBody.ContentLength = int64(len(payload))

	opaque, _ := http.NewRequestWithContext(context.Background(), "PUT", "http://svc/x", nil)
	ob := &opaqueBody{}
	rb := &rewindBody{}

	return []benchCase{
		{"GET", func(*http.Request) {}, get},
		{"PUT4KiB_GetBody", func(r *http.Request) { r.Body, _ = r.GetBody() }, withGetBody},
		{"PUT4KiB_opaque", func(r *http.Request) { rb.Reset(payload); ob.Reader = rb; r.Body = ob }, opaque},
	}
}

// BenchmarkTransport measures the success path: the base called directly,
// then through a Transport. Compare allocs/op and B/op between the pairs.
func BenchmarkTransport(b *testing.B) {
	for _, bc := range benchCases() {
		base := newMemBase()
		tr := NewTransport(base)
		for _, rt := range []struct {
			name string
			rt   http.RoundTripper
		}{{"base", base}, {"retry", tr}} {
			b.Run(bc.name+"/"+rt.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					bc.prepare(bc.req)
					_, _ = rt.rt.RoundTrip(bc.req)
				}
			})
		}
	}
}

func TestTransportSuccessPathAllocations(t *testing.T) {
	limits := map[string]float64{"GET": 0, "PUT4KiB_GetBody": 0, "PUT4KiB_opaque": 3} // opaque: request copy, attempt body, GetBody bound to the buffer (body.go)
	for _, bc := range benchCases() {
		if raceEnabled && bc.name == "PUT4KiB_opaque" {
			continue // its buffer comes from a sync.Pool, which -race makes lossy
		}
		base := newMemBase()
		tr := NewTransport(base)
		direct := testing.AllocsPerRun(200, func() { bc.prepare(bc.req); _, _ = base.RoundTrip(bc.req) })
		through := testing.AllocsPerRun(200, func() { bc.prepare(bc.req); _, _ = tr.RoundTrip(bc.req) })
		assert.LessOrEqual(t, through-direct, limits[bc.name], "%s: %v allocs through the Transport, %v direct", bc.name, through, direct)
	}
}
