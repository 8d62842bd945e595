package retry

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatencyBuckets(t *testing.T) {
	prev := time.Duration(0)
	for i := range latencyBuckets {
		up := latencyUpper(i)
		require.Greater(t, up, prev, "bucket %d's bound grows", i)
		prev = up
	}
	for _, d := range []time.Duration{0, time.Nanosecond, time.Microsecond, 7 * time.Microsecond, time.Millisecond,
		1500 * time.Microsecond, 10 * time.Millisecond, 250 * time.Millisecond, time.Second, 30 * time.Second} {
		i := latencyBucket(d)
		assert.Less(t, d, latencyUpper(i), "%v is below its bucket's bound", d)
		if i > 0 {
			assert.GreaterOrEqual(t, d, latencyUpper(i-1), "%v is not below the bucket before", d)
		}
		if d >= 8*time.Microsecond {
			assert.LessOrEqual(t, float64(latencyUpper(i)), 1.13*float64(d), "%v: within an eighth of a power of two", d)
		}
	}
	assert.Equal(t, latencyBuckets-1, latencyBucket(time.Hour), "longer than the last bound: the last bucket")
}

func TestLatencyQuantile(t *testing.T) {
	var l latencies
	rng := rand.New(rand.NewPCG(1, 2))
	// 98% between 1ms and 3ms, 2% at 250ms.
	sample := func() time.Duration {
		if rng.Float64() < 0.02 {
			return 250 * time.Millisecond
		}
		return time.Millisecond + time.Duration(rng.Float64()*float64(2*time.Millisecond))
	}
	for range HedgeMinSamples - 1 {
		l.add(sample())
	}
	_, ok := l.quantile(0.95)
	assert.False(t, ok, "not before HedgeMinSamples")
	for range 5000 {
		l.add(sample())
	}
	p95, ok := l.quantile(0.95)
	require.True(t, ok)
	assert.InDelta(t, float64(2900*time.Microsecond), float64(p95), float64(300*time.Microsecond), "p95 of 1–3ms is near 2.9ms: %v", p95)
	p99, _ := l.quantile(0.99)
	assert.Greater(t, p99, 200*time.Millisecond, "p99 falls among the 250ms ones: %v", p99)

	// The histogram follows a change: after a few windows of 20ms, p95 is
	// about 20ms.
	for range 4 * latencyWindow {
		l.add(20 * time.Millisecond)
	}
	p95, _ = l.quantile(0.95)
	assert.InDelta(t, float64(20*time.Millisecond), float64(p95), float64(3*time.Millisecond), "%v", p95)
}
