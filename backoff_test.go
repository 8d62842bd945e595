package retry

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleMatchesSeed(t *testing.T) {
	tests := []struct {
		name   string
		s      schedule
		expect []time.Duration // waits before attempts 2, 3, ...
	}{
		{"defaults", schedule{sleep: DefaultSleepTime, factor: DefaultBackoff, maxDelay: DefaultMaxDelay},
			[]time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"seed 1s x1.5", schedule{sleep: time.Second, factor: 1.5, maxDelay: time.Minute},
			[]time.Duration{time.Second, 1500 * time.Millisecond, 2250 * time.Millisecond}},
		{"constant", schedule{sleep: 100 * time.Millisecond, factor: 1, maxDelay: time.Minute},
			[]time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}},
		{"cap below sleep", schedule{sleep: 5 * time.Second, factor: 2, maxDelay: time.Second},
			[]time.Duration{time.Second, time.Second}},
		{"zero sleep", schedule{sleep: 0, factor: 2, maxDelay: time.Second},
			[]time.Duration{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.expect {
				assert.Equal(t, want, tt.s.base(i+1), "wait after attempt %d", i+1)
				assert.Equal(t, want, tt.s.next(i+1, 0, 0.5), "NoJitter must not change the wait")
			}
		})
	}
}

func TestScheduleNoDriftNoOverflow(t *testing.T) {
	s := schedule{sleep: time.Second, factor: 1.1, maxDelay: time.Duration(math.MaxInt64)}
	// Computed from scratch each time: attempt 50 equals 1s × 1.1^49 to the
	// nanosecond, with no error accumulated over 49 multiplications.
	assert.Equal(t, time.Duration(float64(time.Second)*math.Pow(1.1, 49)), s.base(50))

	capped := schedule{sleep: time.Second, factor: 2, maxDelay: 30 * time.Second}
	for _, n := range []int{30, 63, 64, 100, 1000, math.MaxInt32} {
		d := capped.base(n)
		assert.Equal(t, 30*time.Second, d, "attempt %d", n)
	}
	huge := schedule{sleep: time.Hour, factor: 10, maxDelay: time.Duration(math.MaxInt64)}
	assert.Equal(t, time.Duration(math.MaxInt64), huge.base(1000), "no wrap to negative past MaxInt64")
}

func TestJitterBounds(t *testing.T) {
	s := schedule{sleep: time.Second, factor: 2, maxDelay: 10 * time.Second}
	for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
		for n := 1; n <= 6; n++ {
			d := s.base(n)
			s.jitter = FullJitter
			full := s.next(n, 0, r)
			assert.Equal(t, time.Duration(r*float64(d)), full)
			assert.True(t, full >= 0 && full <= d)

			s.jitter = EqualJitter
			eq := s.next(n, 0, r)
			assert.True(t, eq >= d/2 && eq <= d, "equal jitter %v outside [%v, %v]", eq, d/2, d)

			s.jitter = DecorrelatedJitter
			prev := s.base(n)
			dec := s.next(n, prev, r)
			assert.GreaterOrEqual(t, dec, s.sleep)
			assert.LessOrEqual(t, dec, min(s.maxDelay, 3*prev))
		}
	}
	s.jitter = EqualJitter
	assert.Equal(t, 500*time.Millisecond, s.next(1, 0, 0))
	assert.Equal(t, time.Second, s.next(1, 0, 1))
	s.jitter = DecorrelatedJitter
	assert.Equal(t, time.Second, s.next(1, 0, 0), "first decorrelated wait starts from the sleep time")
	assert.Equal(t, 3*time.Second, s.next(1, 0, 1), "upper bound is 3 × the previous wait (the sleep time at first)")
	assert.Equal(t, 10*time.Second, s.next(5, 8*time.Second, 0.9), "capped at the max delay")
}

func TestParseJitter(t *testing.T) {
	for j := NoJitter; j <= DecorrelatedJitter; j++ {
		got, err := ParseJitter(j.String())
		require.NoError(t, err)
		assert.Equal(t, j, got)
	}
	_, err := ParseJitter("sometimes")
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), `"sometimes"`)
	assert.Equal(t, "Jitter(9)", Jitter(9).String())
}
