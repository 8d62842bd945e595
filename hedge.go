package retry

import (
	"math"
	"time"
)

// A Hedge asks a Transport to hedge its requests: when an attempt has not
// answered (response headers) within a delay, send another copy of the
// request, and take whichever answers first. Hedging makes slowness rare
// where retries make failures rare: a request that met a slow server, a
// slow connection or a garbage-collection pause gets a second chance
// without waiting for the first to fail. WithHedge turns it on.
//
// Only requests that may be retried on a timeout are hedged: an idempotent
// method (or an idempotency key, or WithRetryNonIdempotent(true)) and a
// body that can be sent again (GetBody, or buffered within
// WithMaxBufferedBody). Each attempt gets its own copy of the request and
// its own body. See WithHedge for the rules.
type Hedge struct {
	// Delay is how long an attempt may go unanswered before a hedge is
	// sent, when Quantile is 0; with a Quantile, it is the delay used
	// until a host has HedgeMinSamples latencies (0 there: no hedging until
	// then). Must not be negative.
	Delay time.Duration
	// Quantile, in (0, 1), makes the delay that quantile of the latencies
	// (to response headers) of this Transport's recent successful
	// attempts to the request's host: 0.95 sends a hedge for the slowest
	// 5% or so. 0 (the default) uses Delay alone.
	Quantile float64
	// MinDelay is the least delay a Quantile may give. Default 0.
	MinDelay time.Duration
	// MaxHedges is the most hedges in flight at once, besides the attempt
	// they hedge. 0 means 1.
	MaxHedges int
}

// HedgeMinSamples is how many successful attempts to a host a Transport
// must have timed before a Hedge's Quantile applies to it: below that, a
// 95th percentile would rest on a handful of values. Until then the
// Hedge's Delay applies.
const HedgeMinSamples = 100

type hedgeOption struct{ h *Hedge }

func (hedgeOption) isOption() {}

// WithHedge makes a Transport hedge its requests as h says; nil (the
// default) turns hedging off. The Hedge is copied: changing it afterwards
// changes nothing. Usable per request with WithRequestOptions. Do ignores
// it.
//
// A hedge is sent when no attempt in flight has answered within the delay
// (Hedge.Delay, or the Quantile of the host's recent latencies), provided
// that
//
//   - the request may be hedged (see Hedge);
//   - fewer than MaxHedges hedges are in flight, and the attempts made so
//     far, hedges and retries included, are fewer than WithMaxAttempts;
//   - the host is not cooling down (WithHostCooldown);
//   - the retry budget allows it: each hedge spends one retry, and a
//     denied hedge is simply not sent.
//
// The first attempt whose result is not retried (a success, a 404, a
// fatal error) wins: the others are cancelled at once through their own
// contexts, and any response they still produce is closed. A retryable
// failure (a 503, a reset) while another attempt is in flight is not the
// end: the others are awaited. When every attempt in flight has failed
// retryably, the ordinary retry rules apply (backoff, Retry-After,
// deadline, budget) to the last failure, for the attempts that remain; a
// retry may be hedged in turn. The waits between rounds follow the
// schedule by rounds, not attempts: hedges do not lengthen them. The winner's context lives until its body
// is closed, and RoundTrip returns only once every other attempt has
// ended.
//
// Hedges count as attempts in metrics (retry_http_attempts_total) and in
// Event.Attempt; retry_http_hedges_total counts them by result, "won" when
// a hedge's result was its round's (the answer, or the failure the loop
// then went on from), "lost" otherwise. A hedge whose body could not be
// produced (GetBody or WithPrepareRetry failed) is not sent and not
// counted as an attempt.
//
// The attempts of a round run at the same time, each in a goroutine of its
// own: the request's GetBody and the WithPrepareRetry function may be called
// concurrently (each call on its own copy of the request), and a panic in
// them or in the base RoundTripper reaches the caller's goroutine after the
// others have ended. MaxHedges is bounded by WithMaxAttempts. For a
// Quantile, a round that a hedge won counts the time since the round
// began, the least the attempt it replaced would have taken: the slow
// attempts cut short still count, so the quantile does not drift down. An Event of a hedge
// has Hedge set, and WithLogTries writes a footprint for each hedge sent.
//
// Invalid values (negative durations, a Quantile outside [0, 1) or NaN, a
// negative MaxHedges, neither Delay nor Quantile) are an ErrInvalidOption.
func WithHedge(h *Hedge) Option {
	if h == nil {
		return hedgeOption{}
	}
	c := *h
	return hedgeOption{&c}
}

// validate reports what is wrong with h, if anything.
func (h *Hedge) validate() string {
	switch {
	case h.Delay < 0:
		return "Delay must not be negative"
	case h.MinDelay < 0:
		return "MinDelay must not be negative"
	case math.IsNaN(h.Quantile) || h.Quantile < 0 || h.Quantile >= 1:
		return "Quantile must be in [0, 1)"
	case h.MaxHedges < 0:
		return "MaxHedges must not be negative"
	case h.Delay == 0 && h.Quantile == 0:
		return "one of Delay and Quantile must be set"
	}
	return ""
}

// maxHedges is h.MaxHedges with its default.
func (h *Hedge) maxHedges() int {
	if h.MaxHedges == 0 {
		return 1
	}
	return h.MaxHedges
}
