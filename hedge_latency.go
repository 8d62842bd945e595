package retry

import (
	"math/bits"
	"sync"
	"time"
)

// latencies keeps a host's recent latencies to response headers, for a
// Hedge's Quantile: a histogram of log-linear buckets (eight a power of
// two, from 1µs to about a minute, so a quantile is known to within 9%),
// halved whenever it holds latencyWindow samples, so that it follows the
// last few hundred to thousand attempts. It has no clock of its own: the
// Transport times each attempt.
type latencies struct {
	mu     sync.Mutex
	counts [latencyBuckets]uint32 // in latencyUnits of a sample
	total  uint32                 // the sum of counts
	seen   uint64                 // samples ever, for HedgeMinSamples
	// q and at are the last quantile asked for and its value; fresh counts
	// samples since, and the value is computed again after latencyRefresh.
	q     float64
	at    time.Duration
	fresh uint32
}

const (
	latencySub     = 8  // buckets a power of two
	latencyPowers  = 26 // from 2^10 ns to 2^36 ns ≈ 69 s
	latencyBuckets = latencySub * latencyPowers
	latencyWindow  = 1024 // samples before the counts are halved
	latencyUnit    = 256  // a sample's weight: halving keeps fractions of sparse buckets
	latencyRefresh = 16   // samples between two computations of a quantile
)

// latencyMinPower is the power of two of the first bucket, in ns: 2^10 ns,
// about 1µs. Shorter latencies all fall in it.
const latencyMinPower = 10

// latencyBucket returns the bucket of d.
func latencyBucket(d time.Duration) int {
	ns := uint64(max(d, 0))
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1))
	switch {
	case e < latencyMinPower:
		return 0
	case e >= latencyMinPower+latencyPowers:
		return latencyBuckets - 1
	}
	// The three bits below the leading one pick the sub-bucket.
	sub := int((ns << 3 >> e) & (latencySub - 1))
	return (e-latencyMinPower)*latencySub + sub
}

// latencyUpper returns the upper bound of bucket i: every latency in it is
// below.
func latencyUpper(i int) time.Duration {
	e, sub := i/latencySub+latencyMinPower, i%latencySub
	return time.Duration((uint64(latencySub+sub+1) << e) >> 3)
}

// add records a latency.
func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[latencyBucket(d)] += latencyUnit
	l.total += latencyUnit
	l.seen++
	l.fresh++
	if l.total >= latencyWindow*latencyUnit {
		l.total = 0
		for i := range l.counts {
			l.counts[i] /= 2
			l.total += l.counts[i]
		}
	}
}

// quantile returns the q-quantile of the recent latencies (the upper bound
// of its bucket, so a hedge comes no earlier than that share of attempts
// answers), and false while fewer than HedgeMinSamples were recorded.
func (l *latencies) quantile(q float64) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen < HedgeMinSamples {
		return 0, false
	}
	if q == l.q && l.fresh < latencyRefresh && l.at > 0 {
		return l.at, true
	}
	want := uint32(q*float64(l.total)) + 1
	var sum uint32
	i := 0
	for ; i < latencyBuckets-1; i++ {
		sum += l.counts[i]
		if sum >= want {
			break
		}
	}
	l.q, l.at, l.fresh = q, latencyUpper(i), 0
	return l.at, true
}
