//go:build race

package retry

// raceEnabled: under the race detector sync.Pool drops items at random, so
// tests that count allocations of pooled paths skip those paths.
const raceEnabled = true
