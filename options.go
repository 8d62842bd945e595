package retry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"
)

// ErrInvalidOption is wrapped by the error that Do, DoErr and Wrap return
// when an option's value is out of range. The message names the option and
// the value. fn is not called in that case.
var ErrInvalidOption = errors.New("retry: invalid option")

// An Option configures Do, DoErr, Wrap and NewTransport. Options are
// applied in order; where an option is given twice, the last one wins.
// Options that concern HTTP only (listed in transport_options.go:
// WithClassifier, WithRetryNonIdempotent, WithMaxBufferedBody,
// WithAttemptTimeout, WithAttemptHeader, WithPrepareRetry, WithMetrics,
// WithHostCooldown) are
// accepted and ignored by Do, so that one option list can serve both.
//
// Options are plain values: building them once and passing them to many
// calls is safe and cheap.
type Option interface {
	// isOption keeps the set of options closed: config.apply knows every
	// one of them, which lets Do apply options without allocating.
	isOption()
}

type (
	maxAttemptsOption int
	sleepTimeOption   time.Duration
	backoffOption     float64
	maxDelayOption    time.Duration
	jitterOption      Jitter
	retryOnOption     []error
	retryIfOption     func(error) bool
	logTriesOption    bool
	loggerOption      struct{ l *slog.Logger }
	nameOption        string
	onRetryOption     func(Event)
	onRetryCtxOption  func(context.Context, Event)
	onAttemptOption   func(Event)
	budgetOption      struct{ b RetryBudget }
)

func (maxAttemptsOption) isOption() {}
func (sleepTimeOption) isOption()   {}
func (backoffOption) isOption()     {}
func (maxDelayOption) isOption()    {}
func (jitterOption) isOption()      {}
func (retryOnOption) isOption()     {}
func (retryIfOption) isOption()     {}
func (logTriesOption) isOption()    {}
func (loggerOption) isOption()      {}
func (nameOption) isOption()        {}
func (onRetryOption) isOption()     {}
func (onRetryCtxOption) isOption()  {}
func (onAttemptOption) isOption()   {}
func (budgetOption) isOption()      {}

// WithBudget caps retries with b, shared with every other user of b; see
// RetryBudget and its implementation Budget. Each Transport has a budget
// of its own by default (a zero Budget: ratio 0.2, 10 per second, 10s
// window); WithBudget(nil), with an untyped nil or a nil *Budget, turns it
// off. Do has no budget unless given one. A *Budget with negative or NaN
// fields is invalid.
func WithBudget(b RetryBudget) Option { return budgetOption{b} }

// WithMaxAttempts sets how many times fn (or the request) is tried in all,
// the first attempt included. It must be at least 1; the default is
// DefaultMaxAttempts (3). WithMaxAttempts(1) turns retries off.
func WithMaxAttempts(n int) Option { return maxAttemptsOption(n) }

// WithSleepTime sets the wait before the second attempt, the start of the
// exponential schedule. It must not be negative; the default is
// DefaultSleepTime (2s).
func WithSleepTime(d time.Duration) Option { return sleepTimeOption(d) }

// WithBackoff sets the factor by which each wait grows: the wait before
// attempt n+1 is SleepTime × Backoff^(n−1). It must be a finite number of at
// least 1; the default is DefaultBackoff (2). WithBackoff(1) gives constant
// waits.
func WithBackoff(factor float64) Option { return backoffOption(factor) }

// WithMaxDelay caps every single wait, including one asked for by a
// Retry-After header (a longer Retry-After stops the retries instead). It
// must be positive; the default is DefaultMaxDelay (30s).
func WithMaxDelay(d time.Duration) Option { return maxDelayOption(d) }

// WithJitter randomises the waits; see Jitter. The default is NoJitter,
// the exact schedule. For a fleet of clients sharing one server, FullJitter
// or DecorrelatedJitter spread the load.
func WithJitter(j Jitter) Option { return jitterOption(j) }

// WithRetryOn retries only errors that match one of targets with
// errors.Is; any other error is returned at once and unchanged. It ports
// the Python module's exceptions parameter. By default every error is
// retried. Combined with WithRetryIf, an error is retried when either
// accepts it. Targets must not be nil and there must be at least one.
func WithRetryOn(targets ...error) Option { return retryOnOption(targets) }

// WithRetryIf retries only errors for which retryable returns true; use it
// for rules that errors.Is cannot express, such as a type check with
// errors.As. Any other error is returned at once and unchanged. retryable
// must not be nil. Combined with WithRetryOn, an error is retried when
// either accepts it.
func WithRetryIf(retryable func(error) bool) Option { return retryIfOption(retryable) }

// WithLogTries turns on a WARN footprint for every retry. The ERROR
// footprint when retries run out is written either way. The default is
// false.
func WithLogTries(on bool) Option { return logTriesOption(on) }

// WithLogger sets where footprints go. The default (also for nil) is
// slog.Default() at the time of each record.
func WithLogger(l *slog.Logger) Option { return loggerOption{l} }

// WithName sets the operation's name in footprints, events and metrics.
// The default for Do and Wrap is fn's name as the runtime knows it, without
// its import path (for example "main.fetchUser"); for a Transport it is
// "<METHOD> <redacted URL>" in footprints and "default" in metrics.
func WithName(name string) Option { return nameOption(name) }

// WithOnRetry sets a function called with an EventRetry before each wait,
// in the retrying goroutine. It must not be nil and should return quickly; it
// must not close Event.Response's body.
func WithOnRetry(hook func(Event)) Option { return onRetryOption(hook) }

// WithOnRetryContext is WithOnRetry with the context of the call (the
// request's context for a Transport): for a hook that needs what the
// caller's context carries, such as its trace span (see the module
// otelretry, which records each wait as an event of the caller's span).
// It is called after WithOnRetry's hook, if both are set.
func WithOnRetryContext(hook func(context.Context, Event)) Option { return onRetryCtxOption(hook) }

// WithOnAttempt sets a function called with an EventAttempt after every
// attempt, whatever its result: the first, each retry and the last,
// successes included, in the goroutine that made the attempt. Use it for
// request/response logs or traces. It must not be nil and should return
// quickly; it must not read or close Event.Response's body. On a
// Transport, each call builds the event whole (the redacted URL costs one
// allocation); without the hook, attempts cost nothing extra.
func WithOnAttempt(hook func(Event)) Option { return onAttemptOption(hook) }

// config is the resolved set of options. Once built it is never changed,
// so one config serves many goroutines.
type config struct {
	schedule
	maxAttempts int
	retryOn     []error
	retryIf     func(error) bool
	logTries    bool
	logger      *slog.Logger
	name        string
	onRetry     func(Event)
	onRetryCtx  func(context.Context, Event)
	onAttempt   func(Event)
	// random returns a number in [0, 1) for jitter; tests replace it.
	random func() float64
	// err is the first invalid option, reported instead of running.
	err error

	http httpConfig

	// budget caps retries (nil: no cap). budgetSet tells a Transport that
	// WithBudget was given, so that it does not install its default.
	budget    RetryBudget
	budgetSet bool
	// shared is budget when it also shares host cooldowns, else nil.
	shared SharedCooldown
	// metricsSrc is WithMetrics' value; metrics is it resolved for this
	// client's name by NewTransport (nil: no metrics).
	metricsSrc *Metrics
	metrics    *clientMetrics
	// cooldowns is a Transport's table of hosts that asked to be left
	// alone (nil for Do); see WithHostCooldown.
	cooldowns *cooldowns
}

func defaultConfig() config {
	return config{
		schedule: schedule{
			sleep:    DefaultSleepTime,
			factor:   DefaultBackoff,
			maxDelay: DefaultMaxDelay,
		},
		maxAttempts: DefaultMaxAttempts,
		random:      rand.Float64,
		http:        httpConfig{classify: Classify, maxBufferedBody: DefaultMaxBufferedBody},
	}
}

// apply sets one option. A type switch rather than a method call through an
// interface keeps c from escaping, so Do needs no allocation for its options.
func (c *config) apply(o Option) {
	switch o := o.(type) {
	case maxAttemptsOption:
		if o < 1 {
			c.invalid("WithMaxAttempts(%d): must be at least 1", int(o))
			return
		}
		c.maxAttempts = int(o)
	case sleepTimeOption:
		if o < 0 {
			c.invalid("WithSleepTime(%v): must not be negative", time.Duration(o))
			return
		}
		c.sleep = time.Duration(o)
	case backoffOption:
		f := float64(o)
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 1 {
			c.invalid("WithBackoff(%v): must be a finite number of at least 1", f)
			return
		}
		c.factor = f
	case maxDelayOption:
		if o <= 0 {
			c.invalid("WithMaxDelay(%v): must be positive", time.Duration(o))
			return
		}
		c.maxDelay = time.Duration(o)
	case jitterOption:
		if Jitter(o) < NoJitter || Jitter(o) > DecorrelatedJitter {
			c.invalid("WithJitter(%v): unknown jitter", Jitter(o))
			return
		}
		c.jitter = Jitter(o)
	case retryOnOption:
		if len(o) == 0 {
			c.invalid("WithRetryOn(): needs at least one target error")
			return
		}
		for i, t := range o {
			if t == nil {
				c.invalid("WithRetryOn: target %d is nil", i)
				return
			}
		}
		c.retryOn = o
	case retryIfOption:
		if o == nil {
			c.invalid("WithRetryIf(nil): the predicate must not be nil")
			return
		}
		c.retryIf = o
	case logTriesOption:
		c.logTries = bool(o)
	case loggerOption:
		c.logger = o.l
	case nameOption:
		c.name = string(o)
	case onRetryCtxOption:
		if o == nil {
			c.invalid("WithOnRetryContext(nil): the hook must not be nil")
			return
		}
		c.onRetryCtx = o
	case onRetryOption:
		if o == nil {
			c.invalid("WithOnRetry(nil): the hook must not be nil")
			return
		}
		c.onRetry = o
	case onAttemptOption:
		if o == nil {
			c.invalid("WithOnAttempt(nil): the hook must not be nil")
			return
		}
		c.onAttempt = o
	case budgetOption:
		b := o.b
		if lb, ok := b.(*Budget); ok {
			if lb == nil {
				b = nil // a typed nil turns the budget off too
			} else if err := lb.validate(); err != nil {
				c.invalid("WithBudget: %v", err)
				return
			}
		}
		c.budget, c.budgetSet = b, true
		c.shared, _ = b.(SharedCooldown)
	case nil:
		c.invalid("nil Option")
	default:
		c.applyHTTP(o)
	}
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// CheckOptions reports the first invalid option in opts, as an error
// wrapping ErrInvalidOption that names the option and its value, or nil.
// Use it to check options built from configuration before NewTransport,
// which panics on them.
func CheckOptions(opts ...Option) error {
	c := newConfig(opts)
	return c.err
}

// newConfig builds a config from opts on top of the defaults.
func newConfig(opts []Option) config {
	c := defaultConfig()
	for _, o := range opts {
		c.apply(o)
	}
	return c
}

// retryable reports whether Do should retry err under the caller's
// WithRetryOn and WithRetryIf rules (every error when neither is set).
func (c *config) retryable(err error) bool {
	if c.retryOn == nil && c.retryIf == nil {
		return true
	}
	for _, t := range c.retryOn {
		if errors.Is(err, t) {
			return true
		}
	}
	return c.retryIf != nil && c.retryIf(err)
}
