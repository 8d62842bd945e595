package retry

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkTransportParallel measures the success path of a GET under
// concurrency, to one host and to 64, so that per-host state (the budget's
// window, looked up by host) shows what it costs and whether requests wait
// for each other. Run it with -cpu 2,16 to compare GOMAXPROCS. Each
// goroutine goes through the hosts in turn, from its own start, with
// requests built beforehand.
func BenchmarkTransportParallel(b *testing.B) {
	for _, hosts := range []int{1, 64} {
		b.Run("hosts="+strconv.Itoa(hosts), func(b *testing.B) {
			tr := NewTransport(newMemBase())
			reqs := make([]*http.Request, hosts)
			for i := range reqs {
				var err error
				reqs[i], err = http.NewRequestWithContext(context.Background(), "GET", "http://svc"+strconv.Itoa(i)+".example:8080/x", nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			var goroutines atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(goroutines.Add(1))
				for pb.Next() {
					_, _ = tr.RoundTrip(reqs[i%hosts])
					i++
				}
			})
		})
	}
}
