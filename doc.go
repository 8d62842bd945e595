// Package retry makes unreliable calls reliable: it reruns a failed call
// under exponential backoff, records every retry as a structured
// "footprint" log record, and gives up with an error that still reaches the
// root cause.
//
// # Functions
//
// [Do] and [Wrap] retry any Go function; [DoErr] retries a function that
// returns only an error. By default a call is tried 3 times, with waits of
// 2s and 4s (sleep time × backoff^(n−1), each capped at 30s), every error
// is retried except a [Permanent] one and the end of the caller's context,
// and the loop never sleeps past the context's deadline. A function that
// knows when to come back says so with [RetryAfter].
//
//	user, err := retry.Do(ctx, func(ctx context.Context) (*User, error) {
//		return api.GetUser(ctx, id)
//	}, retry.WithMaxAttempts(5), retry.WithSleepTime(time.Second))
//
// # HTTP
//
// [NewTransport] does the same for HTTP: a [Transport], an
// [net/http.RoundTripper] that drops into any [net/http.Client] (and so
// into any SDK that accepts one). It classifies each attempt's outcome into
// a [Category] ([Classify], [WithClassifier]), retries only what may be
// retried (idempotent requests, or requests the server provably did not
// process), replays request bodies, honours Retry-After, never leaks a
// response body, and keeps the secrets of the request's URL out of every
// text it writes: footprints and its own errors ([RedactURL]). (An error
// of the base that it returns as it is, not retried, keeps the base's
// text.) The zero Transport works too.
//
//	client := &http.Client{Transport: retry.NewTransport(nil)}
//
// [WithRequestOptions] changes the options of one request (or one Do call)
// through its context; [WithPrepareRetry] re-signs each retry.
//
// # Overload
//
// Each Transport spends its retries from a [Budget] that counts per
// destination host, so that a fleet of clients does not multiply the load
// on a server that is already down; [WithBudget] shares one, replaces it
// with another [RetryBudget], or turns it off. A 429 or 503 with a
// Retry-After makes the Transport hold every request to that host off
// until then, then let one probe through ([WithHostCooldown]). A budget
// that implements [SharedCooldown] shares the cooldowns too: the module
// github.com/retrykit/retry/redisbudget shares both among the processes of
// a fleet through Redis.
//
// # Hedging
//
// [WithHedge] makes slowness rare where retries make failures rare: when
// no attempt of an idempotent request has answered within a delay (fixed,
// or a quantile of the host's recent latencies), the Transport sends
// another copy and takes the first answer, cancelling the rest.
//
// # Resumable bodies
//
// [WithResumeBody] makes a GET's body that breaks in the middle carry on
// where it stopped, with a range request validated against the first
// response's ETag (or Last-Modified), and never stitch two versions
// ([ErrResumeMismatch]).
//
// # Observing
//
// Every attempt, retry and give-up is an [Event], with an [EventKind]. The
// loop hands each event to its observers: footprints through log/slog
// ([WithLogger], [WithLogTries]), Prometheus counters ([NewMetrics],
// [WithMetrics]), and the hooks of [WithOnAttempt], [WithOnRetry] and
// [WithOnRetryContext]. A RoundTripper below a Transport learns which
// attempt it sends from [AttemptFrom]; the module
// github.com/retrykit/retry/otelretry uses it to trace each attempt as an
// OpenTelemetry span with http.request.resend_count.
//
// # Errors
//
// When the loop gives up on an error it returns an [*Error] with the
// attempts made, the last error and, when it stopped early, the Cause
// ([ErrBudgetExhausted], [ErrNotIdempotent], [ErrNotReplayable], or the
// context's error and cause); errors.Is and errors.As reach all of them.
// An invalid option is an error wrapping [ErrInvalidOption]; see
// [CheckOptions].
package retry
