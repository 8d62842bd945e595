// Package bench measures retry against the peers users would pick instead
// (hashicorp/go-retryablehttp, failsafe-go's failsafehttp) and the bare
// cleanhttp transport as the floor, all in one run on one machine. It is a
// module of its own so that the peers never enter the library's go.mod.
// bench/run.sh runs it and writes RESULTS.md.
package bench

import (
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/retrykit/retry"
)

// Policy is the one policy every peer gets: 3 attempts, waits of Wait then
// 2×Wait, no jitter.
type Policy struct {
	Wait time.Duration
}

// Peer builds a RoundTripper over base under a policy.
type Peer struct {
	Name string
	New  func(base http.RoundTripper, p Policy) http.RoundTripper
}

// Peers are the contenders, the bare transport first.
var Peers = []Peer{
	{"bare", func(base http.RoundTripper, _ Policy) http.RoundTripper { return base }},
	{"retry", func(base http.RoundTripper, p Policy) http.RoundTripper {
		return retry.NewTransport(base, retry.WithSleepTime(p.Wait), retry.WithMaxDelay(4*p.Wait), quiet)
	}},
	{"retry-nobudget", func(base http.RoundTripper, p Policy) http.RoundTripper {
		return retry.NewTransport(base, retry.WithSleepTime(p.Wait), retry.WithMaxDelay(4*p.Wait), retry.WithBudget(nil), quiet)
	}},
	{"retryablehttp", func(base http.RoundTripper, p Policy) http.RoundTripper {
		c := retryablehttp.NewClient()
		c.HTTPClient = &http.Client{Transport: base}
		c.Logger = nil
		c.RetryMax = 2
		c.RetryWaitMin = p.Wait
		c.RetryWaitMax = 4 * p.Wait
		c.Backoff = retryablehttp.DefaultBackoff // exponential, no jitter
		c.ErrorHandler = retryablehttp.PassthroughErrorHandler
		return &retryablehttp.RoundTripper{Client: c}
	}},
	{"failsafehttp", func(base http.RoundTripper, p Policy) http.RoundTripper {
		policy := failsafehttp.NewRetryPolicyBuilder().
			WithMaxAttempts(3).
			WithBackoff(p.Wait, 4*p.Wait).
			ReturnLastFailure().
			Build()
		return failsafehttp.NewRoundTripper(base, policy)
	}},
}
