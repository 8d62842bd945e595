package retry

import (
	"net/http"
	"net/url"
	"time"
)

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
	// Err is the attempt's error. For an HTTP response with a retryable
	// status it describes the status ("retry: server answered 503 Service
	// Unavailable").
	Err error
	// Category is the attempt's classification (Unknown for Do).
	Category Category

	// The fields below are set by a Transport only.

	// Method is the request's method.
	Method string
	// URL is the request's URL without userinfo, fragment or query values.
	URL string
	// Response is the attempt's response, if it got one: read its status
	// and headers only. The body belongs to the Transport.
	Response *http.Response
	// RetryAfter is the wait the server asked for in a Retry-After header,
	// or -1 when it asked for none.
	RetryAfter time.Duration

	// reqURL is the request's URL as the caller gave it, set by a
	// Transport so that footprints can remove its secrets from the error
	// texts they write (see redactText). It is never written out.
	reqURL *url.URL
}
