package bench

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/retrykit/retry"
	h "github.com/retrykit/retry/httptest_helpers"
)

// BenchmarkDownload64MiB downloads 64 MiB from a loopback server that
// resets every response after 8 MiB of its body (a Range response
// included), through each peer, and reports whether the body arrived
// whole (completed 1, with the right SHA-256), the MiB the client read,
// and the bytes the server sent per byte of the body. retry-resume is
// retry with WithResumeBody(16) (resumes that follow progress spend no
// retry of the budget); every other peer retries only until the
// response headers arrive, so it returns the first response and its
// broken body. What each peer's Read returned is logged.
func BenchmarkDownload64MiB(b *testing.B) {
	const size, cut = 64 << 20, 8 << 20
	rng := rand.New(rand.NewPCG(9, 9))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(data)
	cuts := make([]int64, size/cut+1)
	for i := range cuts {
		cuts[i] = cut
	}
	peers := append([]Peer{{"retry-resume", func(base http.RoundTripper, p Policy) http.RoundTripper {
		return retry.NewTransport(base, retry.WithSleepTime(p.Wait), retry.WithMaxDelay(4*p.Wait), retry.WithResumeBody(16), quiet)
	}}}, Peers...)
	for _, p := range peers {
		b.Run("peer="+p.Name, func(b *testing.B) {
			for b.Loop() {
				res := h.NewResource(data).CutAfter(cuts...)
				srv := h.NewServer(b, res)
				base := cleanhttp.DefaultPooledTransport()
				rt := p.New(base, Policy{Wait: time.Millisecond})
				completed, read := 0.0, int64(0)
				req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/blob", nil)
				resp, err := rt.RoundTrip(req)
				if err == nil {
					sum := sha256.New()
					read, err = io.Copy(sum, resp.Body)
					resp.Body.Close()
					if err == nil && read == size && [32]byte(sum.Sum(nil)) == want {
						completed = 1
					}
				}
				if err != nil {
					b.Logf("%s: after %d MiB: %v", p.Name, read>>20, err)
				}
				base.CloseIdleConnections()
				b.ReportMetric(completed, "completed")
				b.ReportMetric(float64(read)/(1<<20), "read-MiB")
				b.ReportMetric(float64(res.BytesSent())/size, "sent/body")
			}
		})
	}
}
