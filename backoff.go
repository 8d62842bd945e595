package retry

import (
	"fmt"
	"math"
	"time"
)

// Default values of the schedule, as in the Python module this package ports.
const (
	// DefaultMaxAttempts is the number of attempts, the first one included.
	DefaultMaxAttempts = 3
	// DefaultSleepTime is the wait before the second attempt.
	DefaultSleepTime = 2 * time.Second
	// DefaultBackoff is the factor by which each wait grows.
	DefaultBackoff = 2.0
	// DefaultMaxDelay caps every single wait.
	DefaultMaxDelay = 30 * time.Second
)

// Jitter spreads the waits of many clients apart so that they do not retry
// in lock step. The forms follow the AWS Architecture Blog article
// "Exponential Backoff And Jitter". The zero value is NoJitter.
type Jitter int

const (
	// NoJitter waits exactly the exponential schedule (the default).
	NoJitter Jitter = iota
	// FullJitter waits a uniform random time in [0, d], where d is the
	// scheduled wait.
	FullJitter
	// EqualJitter waits d/2 plus a uniform random time in [0, d/2].
	EqualJitter
	// DecorrelatedJitter waits min(max delay, uniform in [sleep time,
	// 3 × previous wait]); the first "previous wait" is the sleep time.
	DecorrelatedJitter
)

// String returns the jitter's name: none, full, equal or decorrelated.
func (j Jitter) String() string {
	switch j {
	case NoJitter:
		return "none"
	case FullJitter:
		return "full"
	case EqualJitter:
		return "equal"
	case DecorrelatedJitter:
		return "decorrelated"
	}
	return fmt.Sprintf("Jitter(%d)", int(j))
}

// ParseJitter returns the Jitter named by s (none, full, equal or
// decorrelated), or an error wrapping ErrInvalidOption.
func ParseJitter(s string) (Jitter, error) {
	for j := NoJitter; j <= DecorrelatedJitter; j++ {
		if j.String() == s {
			return j, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown jitter %q (want none, full, equal or decorrelated)", ErrInvalidOption, s)
}

// schedule is the pure part of the backoff: it maps an attempt number to a
// wait. It holds no clock and no random source; the loop passes a random
// number in [0, 1) for the jittered forms.
type schedule struct {
	sleep    time.Duration
	factor   float64
	maxDelay time.Duration
	jitter   Jitter
}

// base returns the wait before attempt n+1 (n ≥ 1, the attempt that just
// failed) without jitter: sleep × factor^(n−1), capped at maxDelay.
// Each value is computed from scratch, so no rounding error accumulates,
// and the cap holds for any n (math.Pow overflows to +Inf, not to a
// negative number).
func (s schedule) base(n int) time.Duration {
	if s.sleep <= 0 {
		return 0
	}
	d := float64(s.sleep) * math.Pow(s.factor, float64(n-1))
	if d >= float64(s.maxDelay) {
		return s.maxDelay
	}
	return time.Duration(d)
}

// next returns the wait before attempt n+1 with jitter applied. prev is the
// wait before attempt n (zero before the first retry) and r is a random
// number in [0, 1).
func (s schedule) next(n int, prev time.Duration, r float64) time.Duration {
	switch s.jitter {
	case FullJitter:
		return time.Duration(r * float64(s.base(n)))
	case EqualJitter:
		d := s.base(n)
		return d/2 + time.Duration(r*float64(d-d/2))
	case DecorrelatedJitter:
		if prev < s.sleep {
			prev = s.sleep
		}
		hi := 3 * float64(prev)
		d := float64(s.sleep) + r*(hi-float64(s.sleep))
		if d >= float64(s.maxDelay) {
			return s.maxDelay
		}
		return time.Duration(d)
	}
	return s.base(n)
}
