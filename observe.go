package retry

import (
	"context"
)

// Observers. The loop calls emit once per event; each observer subscribes
// to the kinds it needs:
//
//	EventAttempt       metrics (retry_http_attempts_total), WithOnAttempt
//	EventRetry         metrics (retry_http_retries_total), footprint (WithLogTries), WithOnRetry, WithOnRetryContext
//	EventGiveUp        footprint (ERROR)
//	EventBudgetDenied  footprint (WARN)
//	EventNotRetried    footprint (WARN)
//	EventHedge         footprint (INFO, with WithLogTries)
//	EventResume        footprint (WARN, with WithLogTries)
//	eventWaited        metrics (retry_http_backoff_seconds)
//	eventDone          metrics (retry_http_requests_total)
//
// Events are built on the stack and observers only read them, so emitting
// allocates nothing; kinds that no observer wants on the success path
// (EventAttempt, eventDone) are not even built.

// observes reports whether any observer wants events of kind k. It is
// only asked for the kinds the success path would emit.
func (c *config) observes(k EventKind) bool {
	switch k {
	case EventAttempt:
		return c.metrics != nil || c.onAttempt != nil
	case eventWaited, eventDone:
		return c.metrics != nil
	}
	return true
}

// emit hands ev to every observer of its kind.
func (c *config) emit(ctx context.Context, controller string, ev *Event) {
	switch ev.Kind {
	case EventAttempt:
		c.metrics.attempt(ev.Method, ev.Category)
		if c.onAttempt != nil {
			c.onAttempt(*ev)
		}
	case EventRetry:
		c.metrics.retry(ev.Method, ev.Category)
		c.footprint(ctx, controller, ev)
		if c.onRetry != nil {
			c.onRetry(*ev)
		}
		if c.onRetryCtx != nil {
			c.onRetryCtx(ctx, *ev)
		}
	case EventGiveUp, EventBudgetDenied, EventNotRetried, EventHedge, EventResume:
		c.footprint(ctx, controller, ev)
	case eventWaited:
		c.metrics.slept(ev.Delay)
	case eventDone:
		c.metrics.request(ev.Method, ev.outcome)
	}
}

// emitAttemptWhole tells the observers about attempt n with the event
// filled in whole (name, URL, response), as WithOnAttempt wants it; the
// metrics alone need only the method and category, which attemptOnce
// gives them without this.
func emitAttemptWhole[T any](ctx context.Context, c *config, cl *call, h *hooks[T], n int, hedge bool, v T, err error, vd verdict) {
	ev := Event{Kind: EventAttempt, Attempt: n, Hedge: hedge, Err: err, Category: vd.category}
	describe(&ev, c, cl, h, v)
	c.emit(ctx, cl.controller, &ev)
}

// done tells the observers how the call ended.
func (c *config) done(ctx context.Context, cl *call, o outcome) {
	if c.observes(eventDone) {
		c.emit(ctx, cl.controller, &Event{Kind: eventDone, Method: cl.method, outcome: o})
	}
}
