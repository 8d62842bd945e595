package redisbudget

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/retrykit/retry"
)

// Defaults of the zero fields of Options.
const (
	DefaultPrefix       = "retry"
	DefaultRatio        = retry.DefaultBudgetRatio
	DefaultMinPerSecond = 1.0
	DefaultWindow       = retry.DefaultBudgetWindow
	DefaultSyncInterval = 100 * time.Millisecond
)

// MaxHosts is how many destination hosts one Budget shares through Redis at
// once. Retries to a host beyond them are decided by the fallback budget
// alone, until a shared host has been idle for a Window and leaves room.
const MaxHosts = retry.MaxHosts

// ErrInvalidOptions is matched by the error of Options.Validate for Options
// that cannot be used, which New panics with.
var ErrInvalidOptions = errors.New("redisbudget: invalid Options")

// Options configure a Budget. Zero fields take the defaults given with
// each; every process of a fleet must use the same Prefix, Ratio,
// MinPerSecond and Window, or they count into different keys or judge the
// same counts by different rules.
type Options struct {
	// Prefix begins every key the Budget writes: the fleet's namespace in
	// Redis. Processes with the same Prefix share one budget per host.
	// Default "retry".
	Prefix string
	// Ratio is the share of the fleet's requests to a host that may be
	// retried, on top of the floor. Default 0.1, as retry.Budget's.
	Ratio float64
	// MinPerSecond is the fleet-wide floor: the rate of retries to a host
	// the whole fleet may always make, however little it sends (a
	// retry.Budget's MinPerSecond is the same floor for one process).
	// Default 1, so 10 retries per default Window for the whole fleet.
	MinPerSecond float64
	// Window is how far back requests and retries are counted. Default
	// 10s. It is cut into ten slots of Window/10, numbered by Redis's
	// clock, so the processes' own clocks need not agree.
	Window time.Duration
	// SyncInterval is how often each process sends its counts to Redis and
	// reads the fleet's, in one pipelined round trip, whatever its
	// traffic. Decisions between syncs use the counts of the last one, so
	// they may be one interval stale. Default 100ms; at most Window/10.
	SyncInterval time.Duration
	// Fallback decides retries while Redis is unreachable: before the
	// first sync, and whenever no sync has succeeded for three
	// SyncIntervals. It is told of every request all along, so that its
	// window is warm when it takes over. Default: a retry.Budget with the
	// core's defaults (a per-process budget). Give one that always allows
	// or always denies to fail open or closed instead.
	Fallback retry.RetryBudget
	// Logger receives one line when the Budget falls back (WARN, with the
	// error) and one when it is back on Redis (INFO); nothing per sync.
	// Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first field of o that cannot be used, as an error
// wrapping ErrInvalidOptions that names it, or nil. Use it to check
// Options built from configuration before New, which panics on them.
func (o Options) Validate() error {
	_, err := o.resolved()
	return err
}

// resolved returns o with its defaults filled in, or an error naming the
// first field it cannot use.
func (o Options) resolved() (Options, error) {
	bad := func(f string, args ...any) (Options, error) {
		return o, fmt.Errorf("%w: "+f, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case strings.ContainsAny(o.Prefix, "{} \t\r\n"):
		return bad("Prefix %q: must not hold braces or white space", o.Prefix)
	case o.Ratio < 0 || math.IsNaN(o.Ratio) || math.IsInf(o.Ratio, 0):
		return bad("Ratio %v: must be a finite number ≥ 0", o.Ratio)
	case o.MinPerSecond < 0 || math.IsNaN(o.MinPerSecond) || math.IsInf(o.MinPerSecond, 0):
		return bad("MinPerSecond %v: must be a finite number ≥ 0", o.MinPerSecond)
	case o.Window < 0:
		return bad("Window %v: must not be negative", o.Window)
	case o.Window > 0 && o.Window < 10*time.Millisecond:
		return bad("Window %v: must be at least 10ms (ten slots of 1ms)", o.Window)
	case o.SyncInterval < 0:
		return bad("SyncInterval %v: must not be negative", o.SyncInterval)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Ratio == 0 {
		o.Ratio = DefaultRatio
	}
	if o.MinPerSecond == 0 {
		o.MinPerSecond = DefaultMinPerSecond
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.SyncInterval > o.Window/slots {
		return bad("SyncInterval %v: must be at most a tenth of Window (%v)", o.SyncInterval, o.Window)
	}
	if o.Fallback == nil {
		o.Fallback = &retry.Budget{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
