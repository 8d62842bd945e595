package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/cristalhq/hedgedhttp"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"

	"github.com/retrykit/retry"
)

// hedgeDelay is the fixed delay of every hedging peer, and the delay of the
// quantile peers of retry while a host has too few samples.
const hedgeDelay = 10 * time.Millisecond

// Settings of failsafe-go's quantile delay: how many executions its moving
// quantile remembers, and how many it needs before it hedges (100, as many
// as retry's HedgeMinSamples, for a like comparison). failsafe-go does not
// hedge at all before then; retry uses Hedge.Delay.
const (
	failsafeQuantileAge       = 1000
	failsafeQuantileThreshold = 100
)

// peer builds a RoundTripper over base. None of them retries a failure (the
// server never fails): only hedging tells them apart. Each hedging peer has
// at most one extra attempt in flight.
type peer struct {
	name string
	new  func(base http.RoundTripper) http.RoundTripper
}

// quiet keeps retry's footprints out of the output.
var quiet = retry.WithLogger(slog.New(slog.DiscardHandler))

// peers are the contenders, bare first: the ratios are to bare.
var peers = []peer{
	{"bare", func(base http.RoundTripper) http.RoundTripper { return base }},
	{"retry", func(base http.RoundTripper) http.RoundTripper {
		return retry.NewTransport(base, retry.WithBudget(nil), quiet)
	}},
	{"retry-hedge-10ms", func(base http.RoundTripper) http.RoundTripper {
		return retry.NewTransport(base, retry.WithBudget(nil), quiet,
			retry.WithHedge(&retry.Hedge{Delay: hedgeDelay, MaxHedges: 1}))
	}},
	{"retry-hedge-p95", func(base http.RoundTripper) http.RoundTripper {
		return retry.NewTransport(base, retry.WithBudget(nil), quiet,
			retry.WithHedge(&retry.Hedge{Quantile: 0.95, Delay: hedgeDelay, MaxHedges: 1}))
	}},
	{"failsafehttp-hedge-10ms", func(base http.RoundTripper) http.RoundTripper {
		hp := hedgepolicy.NewBuilderWithDelay[*http.Response](hedgeDelay).WithMaxHedges(1).Build()
		return failsafehttp.NewRoundTripper(base, hp)
	}},
	{"failsafehttp-hedge-p95", func(base http.RoundTripper) http.RoundTripper {
		hp := hedgepolicy.NewBuilderWithDelayQuantile[*http.Response](0.95, failsafeQuantileAge, failsafeQuantileThreshold).
			WithMaxHedges(1).Build()
		return failsafehttp.NewRoundTripper(base, hp)
	}},
	{"hedgedhttp-10ms", func(base http.RoundTripper) http.RoundTripper {
		rt, err := hedgedhttp.NewRoundTripper(hedgeDelay, 2, base) // 2 attempts in all
		if err != nil {
			panic(err) // the arguments are constants
		}
		return rt
	}},
}
