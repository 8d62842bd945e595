// Package retry makes unreliable calls reliable: it reruns a failed call
// under exponential backoff, records every retry as a structured
// "footprint" log record, and gives up with an error that still reaches the
// root cause.
//
// Do and Wrap retry any Go function; DoErr retries a function that returns
// only an error. By default a call is tried 3 times, with waits of 2s and
// 4s (sleep time × backoff^(n−1), each capped at 30s), every error is
// retried except a Permanent one and the end of the caller's context, and
// the loop never sleeps past the context's deadline.
//
//	user, err := retry.Do(ctx, func(ctx context.Context) (*User, error) {
//		return api.GetUser(ctx, id)
//	}, retry.WithMaxAttempts(5), retry.WithSleepTime(time.Second))
//
// NewTransport does the same for HTTP: an http.RoundTripper that drops into
// any http.Client (and so into any SDK that accepts one). It classifies
// each attempt's outcome into a Category, retries only what may be retried
// (idempotent requests, or requests the server provably did not process),
// replays request bodies, honours Retry-After, and never leaks a response
// body or a secret of the request into a log line or an error message.
//
//	client := &http.Client{Transport: retry.NewTransport(nil)}
//
// Each Transport spends its retries from a Budget, so that a fleet of
// clients does not multiply the load on a server that is already down, and
// can count every attempt, retry and outcome in Prometheus (NewMetrics,
// WithMetrics). Footprints, metrics and the WithOnRetry hook all observe the
// same Event values.
//
// The package ports the Python module dtpyfw.core.retry: retry becomes Do,
// retry_async becomes Do in a goroutine, retry_wrapper becomes Wrap, the
// exceptions parameter becomes WithRetryOn or WithRetryIf, log_tries
// becomes WithLogTries, and footprint records are written through log/slog.
package retry
