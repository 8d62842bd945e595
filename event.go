package retry

import "time"

// An Event describes one failed attempt that is about to be retried, or the
// last one before the loop gives up. The same events feed footprints, the
// WithOnRetry hook and metrics: observers only read them.
type Event struct {
	// Name is the operation's name (see WithName).
	Name string
	// Attempt is the 1-based number of the attempt that just failed.
	Attempt int
	// MaxAttempts is the configured number of attempts.
	MaxAttempts int
	// Delay is the wait about to start before the next attempt; zero when
	// the loop is giving up.
	Delay time.Duration
	// Err is the attempt's error.
	Err error
}
