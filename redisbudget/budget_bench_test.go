package redisbudget_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/redisbudget"
	"github.com/retrykit/retry/redisbudget/redistest"
)

// okBase answers 200 from memory and allocates nothing.
type okBase struct{ resp http.Response }

func (o *okBase) RoundTrip(*http.Request) (*http.Response, error) { return &o.resp, nil }

// BenchmarkSuccessPath measures a successful GET through a Transport with
// each budget: the local default, and the budget shared on Redis (a real
// redis-server; nothing on this path talks to it). Compare ns/op and
// allocs/op between the two.
func BenchmarkSuccessPath(b *testing.B) {
	rs := redistest.Start(b)
	c := newClientTB(b, rs.Addr())
	shared := redisbudget.New(c, redisbudget.Options{})
	b.Cleanup(func() { _ = shared.Close() })
	base := &okBase{resp: http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody}}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://svc/x", nil)
	for _, tc := range []struct {
		name   string
		budget retry.RetryBudget
	}{{"budget=local", &retry.Budget{}}, {"budget=redis", shared}} {
		b.Run(tc.name, func(b *testing.B) {
			tr := retry.NewTransport(base, retry.WithBudget(tc.budget), quiet)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllowRetry measures a retry decision of each budget (the shared
// one on its synced share).
func BenchmarkAllowRetry(b *testing.B) {
	rs := redistest.Start(b)
	shared := redisbudget.New(newClientTB(b, rs.Addr()), redisbudget.Options{Ratio: 1})
	b.Cleanup(func() { _ = shared.Close() })
	for range 1000 {
		shared.Started("svc")
	}
	for shared.Stats().FallingBack {
		shared.Started("svc")
	}
	for _, tc := range []struct {
		name   string
		budget retry.RetryBudget
	}{{"budget=local", &retry.Budget{Ratio: 1}}, {"budget=redis", shared}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.budget.Started("svc")
				tc.budget.AllowRetry("svc")
			}
		})
	}
}
