package bench

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	h "github.com/retrykit/retry/httptest_helpers"
)

// load sends n GETs at the given concurrency through rt and returns how
// many ended in a 200.
func load(b *testing.B, rt http.RoundTripper, url string, n, concurrency int) (ok int) {
	b.Helper()
	var okCount atomic.Int64
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for range jobs {
				req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					okCount.Add(1)
				}
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return int(okCount.Load())
}

const scenarioRequests = 2000

// BenchmarkFaulty: a server where 30% of hits fail (15% 503, 15% TCP
// reset), 2,000 GETs at concurrency 32, 1ms base wait. Reports the share
// of requests that succeeded, server hits per request, and wall time.
func BenchmarkFaulty(b *testing.B) {
	steps := []h.Step{}
	for range 3 {
		steps = append(steps, h.Status(503))
	}
	for range 3 {
		steps = append(steps, h.Reset())
	}
	for range 14 {
		steps = append(steps, h.Status(200).Body("ok"))
	}
	for _, p := range Peers {
		b.Run("peer="+p.Name, func(b *testing.B) {
			for b.Loop() {
				srv := h.NewServer(b, h.OneOf(steps...))
				base := cleanhttp.DefaultPooledTransport()
				rt := p.New(base, Policy{Wait: time.Millisecond})
				start := time.Now()
				ok := load(b, rt, srv.URL, scenarioRequests, 32)
				wall := time.Since(start)
				base.CloseIdleConnections()
				b.ReportMetric(100*float64(ok)/scenarioRequests, "success-%")
				b.ReportMetric(float64(srv.Hits())/scenarioRequests, "hits/req")
				b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
			}
		})
	}
}

// BenchmarkOutage: a server that always answers 503, 2,000 GETs at
// concurrency 32. Reports server hits per request: the load each library
// puts on a server that is already down.
func BenchmarkOutage(b *testing.B) {
	for _, p := range Peers {
		b.Run("peer="+p.Name, func(b *testing.B) {
			for b.Loop() {
				srv := h.NewServer(b, h.Status(503))
				base := cleanhttp.DefaultPooledTransport()
				rt := p.New(base, Policy{Wait: time.Millisecond})
				load(b, rt, srv.URL, scenarioRequests, 32)
				base.CloseIdleConnections()
				b.ReportMetric(float64(srv.Hits())/scenarioRequests, "hits/req")
			}
		})
	}
}

// streamBody yields n bytes without holding them: an upload streamed from
// elsewhere (a file, a pipe), with no GetBody.
type streamBody struct{ left int64 }

func (s *streamBody) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.left)
	for i := range p[:n] {
		p[i] = 'u'
	}
	s.left -= n
	return int(n), nil
}
func (*streamBody) Close() error { return nil }

// peakHeap samples the heap while fn runs and returns the peak above the
// heap in use before it.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// BenchmarkUpload64MiB: a 64 MiB streamed PUT without GetBody to a server
// that reads it all and answers 503 the first time, then 200. Reports the
// peak heap and the final status: a library that buffers the body can
// retry it; one that does not cannot, but needs no 64 MiB.
func BenchmarkUpload64MiB(b *testing.B) {
	const size = 64 << 20
	for _, p := range Peers {
		b.Run("peer="+p.Name, func(b *testing.B) {
			for b.Loop() {
				// Not the helper server, which keeps request bodies: this
				// one discards them, so that only the client's memory counts.
				var hits atomic.Int64
				discard := newDiscardServer(b, &hits)
				base := cleanhttp.DefaultPooledTransport()
				rt := p.New(base, Policy{Wait: time.Millisecond})
				status := 0
				peak := peakHeap(func() {
					req, _ := http.NewRequestWithContext(context.Background(), "PUT", discard, &streamBody{left: size})
					req.ContentLength = size
					resp, err := rt.RoundTrip(req)
					if err == nil {
						status = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
				base.CloseIdleConnections()
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(status), "final-status")
			}
		})
	}
}
