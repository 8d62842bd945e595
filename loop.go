package retry

import (
	"context"
	"net/url"
	"time"
)

// The retry loop: the one place that decides whether to retry and the one
// place that waits. Do and Transport adapt it with hooks; observers hear
// from it through emit (observe.go).

// verdict is what an attempt's hook decides about its own result. It is
// kept to 32 bytes: it is returned by value on every attempt, and a larger
// copy costs more than the rest of a successful call. What only a retry
// needs (the response, Retry-After) comes from hooks.describe instead.
type verdict struct {
	// err describes the failure: the error to return when stop is set, and
	// the attempt's error for events and *Error otherwise.
	err error
	// category is the attempt's classification (Unknown for Do).
	category Category
	// stop means: this result is the answer as it is (a success, or a
	// failure that is not retried). The loop returns the attempt's value
	// and err.
	stop bool
	// outcome is how the call ends when stop is set.
	outcome outcome
}

// byContext reports whether the attempt failed because the caller's
// context ended (the loop then stops on it by the context rule). A judge
// never says so: a Canceled verdict that does not stop is the loop's own.
func (vd verdict) byContext() bool { return !vd.stop && vd.category == Canceled }

// hooks adapt the loop to what is being retried: a function (Do) or an HTTP
// request (Transport).
//
// What names the call (controller, method, host: see call) is a parameter
// of run rather than fields here: escape analysis treats a struct as a
// whole, and a string that reaches the logger would send the closures to
// the heap with it.
type hooks[T any] struct {
	// attempt runs one attempt.
	attempt func(context.Context) (T, error)
	// judge decides what the attempt's result calls for. It gets all it
	// needs from the result: an attempt stores nothing for it.
	judge func(T, error) verdict
	// release frees a result that will not be returned (nil: nothing to do).
	release func(T)
	// name is the operation's name when WithName was not given.
	name func() string
	// describe fills in the event of a failed attempt from its result: the
	// request's method and URL, the response and its Retry-After, or the
	// wait fn asked for with RetryAfter (nil: nothing to add; the loop sets
	// RetryAfter to -1 before).
	describe func(*Event, T)
	// made, when set, says how many attempts were made so far, and the
	// number of the one attempt returned and whether it was a hedge: an
	// attempt of a hedged request makes several (nil: one at a time).
	made func() (total, last int, hedge bool)
}

// call names one call of the loop for its observers and its budget.
type call struct {
	// controller names the caller in footprints: "retry.Do",
	// "retry.Transport".
	controller string
	// method is the request's method, for metric labels ("" for Do).
	method string
	// host is the request's URL.Host, for the budget ("" for Do).
	host string
}

// run calls h.attempt until the loop decides to stop, and returns the
// call's result. The first attempt runs here and everything after a
// failure in retrying, which keeps the success path short.
func run[T any](ctx context.Context, c *config, cl *call, h hooks[T]) (T, error) {
	var zero T
	if c.err != nil {
		return zero, c.err
	}
	if err := ctx.Err(); err != nil {
		c.done(ctx, cl, outcomeOfContext(err))
		return zero, contextError(ctx)
	}
	switch b := c.budget.(type) {
	case nil:
	case *Budget:
		b.started(cl.host, time.Now) // the common case, without an interface call
	default:
		b.Started(cl.host)
	}
	if c.shared != nil {
		c.learnCooldown(cl.host)
	}
	if c.cooldowns != nil && c.cooldowns.active.Load() != 0 {
		// Some host cools down: wait if it is this call's.
		if o, cause := holdOff(ctx, c, cl); cause != nil {
			err := cause
			if o == outcomeCooldown {
				err = &Error{Err: ErrHostCoolingDown, Category: Throttled, Cause: cause}
			}
			c.done(ctx, cl, o)
			return zero, err
		}
	}
	v, vd, err := attemptOnce(ctx, c, cl, &h, 1)
	if !vd.stop || vd.category.Retryable() {
		v, vd = retrying(ctx, c, cl, &h, v, err, vd)
	}
	// Every call ends with exactly one outcome.
	if c.observes(eventDone) {
		c.done(ctx, cl, vd.outcome)
	}
	return v, vd.err
}

// attemptOnce runs attempt n and tells the observers. An error that comes
// back once the caller's context has ended is the context's doing,
// whatever its text: the loop stops on it by the context rule.
func attemptOnce[T any](ctx context.Context, c *config, cl *call, h *hooks[T], n int) (T, verdict, error) {
	v, err := h.attempt(ctx)
	var vd verdict
	if err != nil {
		if ue, ok := err.(*unsentError); ok {
			// Nothing was sent: no attempt to judge, count or report. The
			// loop stops on it (see retrying).
			if n == 1 {
				return v, verdict{stop: true, err: ue.err, category: Fatal, outcome: ue.outcome}, ue.err
			}
			return v, verdict{stop: true, err: ue, category: Fatal, outcome: ue.outcome}, err
		}
	}
	if err != nil && ctx.Err() != nil {
		// Decided from the context, before and without the judge (and so
		// the classifier, see Classifier).
		vd = verdict{err: err, category: Canceled}
	} else {
		vd = h.judge(v, err)
		if b := c.budget; b != nil {
			if _, local := b.(*Budget); !local { // a *Budget counts no attempts
				b.Attempted(cl.host, vd.category.Retryable())
			}
		}
	}
	hedge := false
	if h.made != nil {
		_, n, hedge = h.made()
	}
	switch {
	case c.onAttempt != nil:
		emitAttemptWhole(ctx, c, cl, h, n, hedge, v, err, vd)
	case c.observes(EventAttempt):
		c.emit(ctx, cl.controller, &Event{Kind: EventAttempt, Attempt: n, Hedge: hedge, MaxAttempts: c.maxAttempts, Err: err, Category: vd.category, RetryAfter: -1, Method: cl.method})
	}
	return v, vd, err
}

// retrying carries on after attempt 1, whose result v, err was judged vd,
// and returns the call's result and final verdict. Each turn decides what
// the last attempt calls for, waits, and makes the next attempt.
func retrying[T any](ctx context.Context, c *config, cl *call, h *hooks[T], v T, err error, vd verdict) (T, verdict) {
	var zero T
	n := 1 // attempts made
	if h.made != nil {
		n, _, _ = h.made()
	}
	// rounds counts the loop's attempts: the waits follow the schedule by
	// rounds, so that the hedges of a round do not lengthen them.
	rounds := 1
	held := err == nil // v is a result to hand back (a response), not a failure
	last := vd         // the last failure that was not the context's doing
	var prev time.Duration
	var reqURL *url.URL // for *Error's message: see Event.reqURL
	for {
		if ue, ok := vd.err.(*unsentError); ok {
			// Attempt n could not be made, and nothing was sent: the call
			// ends with the failure before it, and why.
			vd.err = &Error{Attempts: n - 1, Err: last.err, Category: last.category, Cause: ue.err, url: reqURL}
			return zero, vd
		}
		// Decide, from the attempt's verdict, the context, the schedule,
		// the deadline and, last, the budget.
		if !vd.byContext() || last.err == nil {
			last = vd
		}
		ev := Event{Attempt: n, Err: last.err, Category: last.category}
		describe(&ev, c, cl, h, v)
		reqURL = ev.reqURL
		s := situation{
			verdict: vd, attempt: n, maxAttempts: c.maxAttempts, held: held,
			backoff: c.next(rounds, prev, c.random()), retryAfter: ev.RetryAfter, maxDelay: c.maxDelay,
			cooldown: c.cooling(cl.host, false),
		}
		if s.cooldown > 0 {
			s.cooldownJitter = cooldownJitter(s.cooldown, c.random())
		}
		if cerr := ctx.Err(); cerr != nil {
			s.ctxErr, s.ctxCause = cerr, contextError(ctx)
		}
		if dl, ok := ctx.Deadline(); ok {
			s.hasDeadline, s.untilDeadline = true, time.Until(dl)
		}
		d := decide(s)
		if d.step == stepRetry && !c.spendRetry(cl.host) {
			d = budgetDenied // the budget is asked last, and only then
		}

		// Tell the observers.
		if d.event != 0 {
			ev.Kind, ev.Delay, ev.outcome = d.event, d.wait, d.outcome
			if d.event == EventNotRetried && ev.Err == nil && ev.Response != nil {
				ev.Err = &statusError{ev.Response.Status}
			}
			c.emit(ctx, cl.controller, &ev)
		}

		if d.step != stepRetry {
			vd.outcome = d.outcome
			switch {
			case d.step == stepReturn:
				// The attempt's own result and error.
			case d.release:
				h.release(v)
				v, held = zero, false
				fallthrough
			case !held:
				v, vd.err = zero, &Error{Attempts: n, Err: last.err, Category: last.category, Cause: d.cause, url: ev.reqURL}
			default:
				vd.err = nil // the held result is the answer
			}
			return v, vd
		}

		// Wait, having freed the failed result. A wait cut short by the
		// context goes back to deciding, which stops by the context rule.
		if h.release != nil {
			h.release(v)
		}
		v, held = zero, false
		if !sleep(ctx, d.wait) {
			vd = verdict{err: last.err, category: Canceled}
			continue
		}
		if c.observes(eventWaited) {
			c.emit(ctx, cl.controller, &Event{Kind: eventWaited, Delay: d.wait, Method: cl.method})
		}
		prev = d.wait
		c.learnCooldown(cl.host)
		if c.cooldowns != nil && c.cooldowns.active.Load() != 0 {
			// The host may have started cooling down during the wait, or
			// another request may be probing it.
			if o, cause := holdOff(ctx, c, cl); cause != nil {
				if ctx.Err() != nil {
					vd = verdict{err: last.err, category: Canceled}
					continue // the context rule
				}
				return zero, verdict{err: &Error{Attempts: n, Err: last.err, Category: last.category, Cause: cause, url: reqURL}, outcome: o}
			}
		}

		// Make the next attempt.
		n++
		rounds++
		v, vd, err = attemptOnce(ctx, c, cl, h, n)
		if h.made != nil {
			n, _, _ = h.made()
		}
		held = err == nil
	}
}

// holdOff waits, before an attempt, until the call's host is no longer
// cooling down (see WithHostCooldown), each wait with its jitter. It
// returns the cause and the call's outcome when the call must stop
// instead: the cooldown would outlast the deadline (errCoolingPastDeadline),
// or the context ended during a wait.
func holdOff(ctx context.Context, c *config, cl *call) (outcome, error) {
	for {
		d := c.cooling(cl.host, true)
		if d <= 0 {
			return 0, nil
		}
		d += cooldownJitter(d, c.random())
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
			return outcomeCooldown, errCoolingPastDeadline
		}
		if !sleep(ctx, d) {
			return outcomeOfContext(ctx.Err()), contextError(ctx)
		}
		if c.observes(eventWaited) {
			c.emit(ctx, cl.controller, &Event{Kind: eventWaited, Delay: d, Method: cl.method})
		}
	}
}

// cooling returns how long a call to host must still hold off (0 when it
// may go: the host does not cool down, or, with claim, this call is its
// probe). Without claim it only plans a wait and claims no probe.
func (c *config) cooling(host string, claim bool) time.Duration {
	switch {
	case c.cooldowns == nil || c.http.noCooldown:
		return 0
	case claim:
		return c.cooldowns.left(host, time.Now)
	}
	return c.cooldowns.remaining(host, time.Now)
}

// learnCooldown brings into the Transport's own table the cooldown of host
// that a SharedCooldown budget knows of, if any, so that the wait and the
// probe rules of WithHostCooldown apply to it.
func (c *config) learnCooldown(host string) {
	if c.shared == nil || c.cooldowns == nil || c.http.noCooldown {
		return
	}
	if until := c.shared.CoolingUntil(host); !until.IsZero() {
		c.cooldowns.learn(host, until)
	}
}

// describe fills in ev, an event about v, the result of a call's attempt:
// what the call and the options say (name, attempts, method) and what v
// says (hooks.describe: URL, response, Retry-After).
func describe[T any](ev *Event, c *config, cl *call, h *hooks[T], v T) {
	ev.Name, ev.MaxAttempts, ev.Method, ev.RetryAfter = c.name, c.maxAttempts, cl.method, -1
	if ev.Name == "" {
		ev.Name = h.name()
	}
	if h.describe != nil {
		h.describe(ev, v)
	}
}

// spendRetry asks the budget, if any, for one retry to host.
func (c *config) spendRetry(host string) bool {
	return c.budget == nil || c.budget.AllowRetry(host)
}

// situation is what decide needs to know after an attempt. The loop
// gathers it from the clock and the context; decide itself reads neither.
type situation struct {
	verdict     verdict
	attempt     int
	maxAttempts int
	// held: the attempt returned a result to hand back (an HTTP response
	// with a retryable status), not an error.
	held bool
	// ctxErr is the caller's context's error (nil while it runs) and
	// ctxCause the error that reports it, with its cause.
	ctxErr, ctxCause error
	// backoff is the schedule's wait; retryAfter the wait the server or fn
	// asked for (-1: none); maxDelay the cap.
	backoff, retryAfter, maxDelay time.Duration
	// cooldown is the time left in the host's cooldown (0: none), and
	// cooldownJitter what to add to it when it is the longest wait.
	cooldown, cooldownJitter time.Duration
	// untilDeadline is the time left before the context's deadline, if
	// hasDeadline.
	untilDeadline time.Duration
	hasDeadline   bool
}

// step is what the loop does next.
type step uint8

const (
	stepRetry  step = iota // wait, then attempt again
	stepReturn             // return the attempt's result as it is
	stepGiveUp             // stop on a retryable failure: the held result, or an *Error
)

// decision is decide's answer.
type decision struct {
	step    step
	wait    time.Duration // before the next attempt, with stepRetry
	outcome outcome       // how the call ends, unless stepRetry
	// cause is the *Error's Cause when the loop gives up (nil: the attempts
	// ran out, or the Retry-After was too long).
	cause error
	// release: free the held result and return an *Error (a cancel).
	release bool
	// event is what to tell the observers (0: nothing).
	event EventKind
}

// decide says what the loop does after an attempt, in this order: a
// verdict that stops; the caller's context; the attempts; a Retry-After
// above the max delay; a wait (the schedule's, the Retry-After, the host's
// cooldown: the longest) that would reach the deadline. It reads no clock,
// no context and no budget: a stepRetry it returns is still subject to the
// retry budget, which the loop asks last (see budgetDenied).
func decide(s situation) decision {
	switch {
	case s.verdict.stop:
		// A success, or a failure the request does not allow to retry.
		d := decision{step: stepReturn, outcome: s.verdict.outcome}
		if s.verdict.category.Retryable() {
			d.event = EventNotRetried
		}
		return d
	case s.ctxErr != nil:
		// The caller's context ended: stop without a footprint. At a
		// deadline the result in hand, if any, is the answer; a cancel
		// frees it.
		return decision{step: stepGiveUp, outcome: outcomeOfContext(s.ctxErr), cause: s.ctxCause,
			release: s.held && s.ctxErr == context.Canceled}
	case s.attempt >= s.maxAttempts:
		return decision{step: stepGiveUp, outcome: outcomeExhausted, event: EventGiveUp}
	case s.retryAfter > s.maxDelay:
		// The server (or fn) gets its answer back at once rather than a
		// retry it asked not to have so soon.
		return decision{step: stepGiveUp, outcome: outcomeRetryAfterTooLong, event: EventGiveUp}
	}
	// The wait: the schedule's, or what the server (or fn) asked for, or
	// what is left of the host's cooldown, with its jitter; the longest.
	// (A request's own Retry-After started the cooldown: it ends no later,
	// so that request waits exactly what it was asked to.)
	wait := max(s.backoff, s.retryAfter)
	cooling := s.cooldown > wait
	if cooling {
		wait = s.cooldown + s.cooldownJitter
	}
	switch {
	case s.hasDeadline && s.untilDeadline <= wait:
		// The next attempt would have no time left.
		if cooling {
			return decision{step: stepGiveUp, outcome: outcomeCooldown, cause: errCoolingPastDeadline, event: EventGiveUp}
		}
		return decision{step: stepGiveUp, outcome: outcomeDeadline, cause: context.DeadlineExceeded, event: EventGiveUp}
	}
	return decision{step: stepRetry, wait: wait, event: EventRetry}
}

// unsentError is what an attempt returns when it could not be made at all,
// so that nothing was sent: a Transport's GetBody or WithPrepareRetry
// failed. The loop stops on it: the call's error is an *Error with the
// failure before it and err as the Cause. outcome is the call's outcome.
type unsentError struct {
	err     error
	outcome outcome
}

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// budgetDenied is the decision when the retry budget refuses a retry that
// every other rule allowed.
var budgetDenied = decision{step: stepGiveUp, outcome: outcomeBudgetExhausted, cause: ErrBudgetExhausted, event: EventBudgetDenied}

// sleep waits for d or until ctx is done, and reports whether the wait ran
// its course.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
