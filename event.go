package retry

import (
	"net/http"
	"net/url"
	"time"
)

// An Event is what the loop tells its observers: footprints, metrics, and
// the hooks of WithOnAttempt and WithOnRetry. Its Kind says what happened;
// observers only read it.
type Event struct {
	// Kind says what the event reports.
	Kind EventKind
	// Name is the operation's name (see WithName).
	Name string
	// Attempt is the 1-based number of the attempt the event is about.
	Attempt int
	// MaxAttempts is the configured number of attempts.
	MaxAttempts int
	// Delay is the wait about to start before the next attempt
	// (EventRetry, EventResume), or the delay after which a hedge was sent
	// (EventHedge); zero for the other kinds.
	Delay time.Duration
	// Err is the attempt's error. For EventAttempt it is the error as the
	// attempt returned it (nil with a response, whatever its status); for
	// the other kinds, a response with a retryable status is described by
	// an error ("retry: server answered 503 Service Unavailable").
	Err error
	// Category is the attempt's classification (Unknown for Do, except
	// Canceled for an attempt cut short by the caller's context, or by a
	// hedged round whose winner answered first).
	Category Category
	// Hedge is true when the attempt is a hedge (see WithHedge):
	// EventAttempt for a hedge's attempt, and EventHedge.
	Hedge bool
	// ResumedAt is, for EventResume and the EventGiveUp of a resumable
	// body (see WithResumeBody), how many bytes of the response body were
	// delivered before it broke: where the range request starts.
	ResumedAt int64

	// RetryAfter is the wait the server asked for in a Retry-After header
	// (a Transport), or fn with RetryAfter (Do); -1 when none was asked
	// for.
	RetryAfter time.Duration

	// The fields below are set by a Transport only.

	// Method is the request's method.
	Method string
	// URL is the request's URL without userinfo, fragment or query values.
	URL string
	// Response is the attempt's response, if it got one: read its status
	// and headers only. The body belongs to the Transport (or, for the
	// answer of the call, to the caller).
	Response *http.Response

	// outcome is how the call ends, for EventGiveUp, EventBudgetDenied,
	// EventNotRetried and eventDone.
	outcome outcome
	// reqURL is the request's URL as the caller gave it, set by a
	// Transport so that footprints can remove its secrets from the error
	// texts they write (see redactText). It is never written out.
	reqURL *url.URL
}

// An EventKind says what an Event reports.
type EventKind uint8

// The kinds of events. Footprints are written for EventRetry, EventHedge
// and EventResume (with WithLogTries), EventGiveUp, EventBudgetDenied and EventNotRetried;
// metrics count EventAttempt and EventRetry; WithOnAttempt sees
// EventAttempt and WithOnRetry sees EventRetry.
const (
	// EventAttempt: an attempt ended, whatever its result (the first, a
	// retry, the last; a success too).
	EventAttempt EventKind = iota + 1
	// EventRetry: a failed attempt is retried after Delay.
	EventRetry
	// EventGiveUp: the loop gives up on a retryable failure: the attempts
	// ran out, a Retry-After asked for more than the max delay, or the
	// next wait would reach the context's deadline.
	EventGiveUp
	// EventBudgetDenied: the retry budget denied the retry.
	EventBudgetDenied
	// EventNotRetried: a retryable failure that the request does not allow
	// to retry: its method is not idempotent, or its body cannot be sent
	// again.
	EventNotRetried
	// EventHedge: a hedge, attempt Attempt, was sent because no attempt
	// had answered after Delay (see WithHedge).
	EventHedge
	// EventResume: a response body broke after ResumedAt bytes and is
	// resumed, after Delay, with a range request (see WithResumeBody).
	EventResume

	// Kinds only this package's observers see.
	eventWaited // a wait ran its course (Delay)
	eventDone   // the call ended (outcome)
)

var eventKindNames = [...]string{
	EventAttempt:      "attempt",
	EventRetry:        "retry",
	EventGiveUp:       "give_up",
	EventBudgetDenied: "budget_denied",
	EventNotRetried:   "not_retried",
	EventHedge:        "hedge",
	EventResume:       "resume",
	eventWaited:       "waited",
	eventDone:         "done",
}

// String returns the kind's name in snake case: "attempt", "retry",
// "give_up", "budget_denied", "not_retried", "hedge", "resume".
func (k EventKind) String() string {
	if int(k) >= len(eventKindNames) || eventKindNames[k] == "" {
		return "unknown"
	}
	return eventKindNames[k]
}
