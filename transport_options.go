package retry

import (
	"net/http"
	"time"
)

// DefaultMaxBufferedBody is the largest request body, in bytes, that a
// Transport buffers in memory to replay on a retry when the request has no
// GetBody: 1 MiB.
const DefaultMaxBufferedBody = 1 << 20

// httpConfig holds the options that only a Transport uses.
type httpConfig struct {
	classify           Classifier
	retryNonIdempotent bool
	maxBufferedBody    int64
	attemptTimeout     time.Duration
	attemptHeader      string
	prepareRetry       func(*http.Request) error
	noCooldown         bool // WithHostCooldown(false)
	hedge              *Hedge
	maxResumes         int // WithResumeBody
}

type (
	classifierOption         Classifier
	retryNonIdempotentOption bool
	maxBufferedBodyOption    int64
	attemptTimeoutOption     time.Duration
	attemptHeaderOption      string
	prepareRetryOption       func(*http.Request) error
	metricsOption            struct{ m *Metrics }
	hostCooldownOption       bool
)

func (classifierOption) isOption()         {}
func (retryNonIdempotentOption) isOption() {}
func (maxBufferedBodyOption) isOption()    {}
func (attemptTimeoutOption) isOption()     {}
func (attemptHeaderOption) isOption()      {}
func (prepareRetryOption) isOption()       {}
func (metricsOption) isOption()            {}
func (hostCooldownOption) isOption()       {}

// applyHTTP sets one of the options that only a Transport uses (Do
// accepts and ignores them, so that one option list can serve both):
// WithClassifier, WithRetryNonIdempotent, WithMaxBufferedBody,
// WithAttemptTimeout, WithAttemptHeader, WithPrepareRetry, WithMetrics,
// WithHostCooldown, WithHedge and WithResumeBody.
// Like config.apply, it is a type switch, so that options are applied
// without allocating.
func (c *config) applyHTTP(o Option) {
	switch o := o.(type) {
	case classifierOption:
		if o == nil {
			c.invalid("WithClassifier(nil): the classifier must not be nil")
			return
		}
		c.http.classify = Classifier(o)
	case retryNonIdempotentOption:
		c.http.retryNonIdempotent = bool(o)
	case maxBufferedBodyOption:
		if o < 0 {
			c.invalid("WithMaxBufferedBody(%d): must not be negative", int64(o))
			return
		}
		c.http.maxBufferedBody = int64(o)
	case attemptTimeoutOption:
		if o < 0 {
			c.invalid("WithAttemptTimeout(%v): must not be negative", time.Duration(o))
			return
		}
		c.http.attemptTimeout = time.Duration(o)
	case attemptHeaderOption:
		if o != "" && !validHeaderName(string(o)) {
			c.invalid("WithAttemptHeader(%q): not a valid header name", string(o))
			return
		}
		c.http.attemptHeader = http.CanonicalHeaderKey(string(o))
	case prepareRetryOption:
		if o == nil {
			c.invalid("WithPrepareRetry(nil): the function must not be nil")
			return
		}
		c.http.prepareRetry = o
	case metricsOption:
		c.metricsSrc = o.m
	case hostCooldownOption:
		c.http.noCooldown = !bool(o)
	case hedgeOption:
		if o.h != nil {
			if why := o.h.validate(); why != "" {
				c.invalid("WithHedge(%+v): %s", *o.h, why)
				return
			}
		}
		c.http.hedge = o.h
	case resumeBodyOption:
		if o < 0 {
			c.invalid("WithResumeBody(%d): must not be negative", int(o))
			return
		}
		c.http.maxResumes = int(o)
	}
}

// WithMetrics makes a Transport count its attempts, retries, requests and
// waits in m, labelled with the client name of WithName ("default" if
// none): use a fixed name per client, never one built from a request, so
// that the label stays bounded. The default is no metrics. Do ignores it.
func WithMetrics(m *Metrics) Option { return metricsOption{m} }

// WithHostCooldown turns the host cooldown of a Transport on or off; it is
// on by default. When any attempt to a host gets a 429 or a 503 with a
// Retry-After within the max delay, the Transport holds that host off
// until then: every attempt to it, the retries and the first attempts of
// new requests alike, waits until the cooldown ends, plus a jitter of up to
// a tenth of it (at most 1s). Then one request probes the host while the
// others wait 100ms more for its answer: another 429 or 503 with a
// Retry-After holds them all off again, any other answer clears the
// cooldown.
// The waits count in retry_http_backoff_seconds. A request whose deadline
// comes before the cooldown's end is not sent: RoundTrip returns at once
// an *Error matching both ErrHostCoolingDown and context.DeadlineExceeded
// (outcome "cooldown"); a cancel during the wait returns at once. Hosts
// are told apart by the request's URL.Host. A budget that implements
// SharedCooldown (see redisbudget) shares the cooldowns with other
// processes: the ones this Transport starts, and theirs, which this one
// then waits for as for its own. Do ignores it; given with
// WithRequestOptions, it turns the waiting off or on for that request.
func WithHostCooldown(on bool) Option { return hostCooldownOption(on) }

// WithClassifier sets how a Transport sorts each attempt's outcome into a
// Category. The default is Classify; a custom classifier can call it for
// the cases it does not handle itself. It must not be nil. Do ignores it.
func WithClassifier(c Classifier) Option { return classifierOption(c) }

// WithRetryNonIdempotent lets a Transport retry requests whose method is
// not idempotent (POST, PATCH, ...) and which carry no Idempotency-Key, on
// every retryable category. By default (false) such requests are retried
// only when the server provably did not process them: a DialError, a 429
// or a 503. Do ignores it.
func WithRetryNonIdempotent(on bool) Option { return retryNonIdempotentOption(on) }

// WithMaxBufferedBody sets the largest request body, in bytes, that a
// Transport buffers to replay when the request has no GetBody. The limit is
// exact, whatever the sizes of the body's Reads: a body of at most n bytes
// is read into memory before the first attempt and replayed on each retry;
// a longer one, or one whose ContentLength is above n (then not read
// ahead), is sent once, whole, and not retried. At most n+1 bytes are read
// ahead, the extra byte telling the two cases apart; 0 reads nothing
// ahead: every body without GetBody is sent once, as it is. Buffering stops when the request's context ends (as with
// http.Client.Timeout), checked between Reads: RoundTrip then closes the
// body and returns an error wrapping the context's error and its
// context.Cause, having sent nothing. A buffered request with Trailer keys
// and no declared length goes out chunked on every attempt, so each one
// carries the trailers. Any n from 0 to math.MaxInt64 is valid; it must
// not be negative. The default is DefaultMaxBufferedBody (1 MiB). Do
// ignores it.
func WithMaxBufferedBody(n int64) Option { return maxBufferedBodyOption(n) }

// WithAttemptTimeout bounds each attempt of a Transport, until the response
// headers arrive, by d (or by what is left of the request context's
// deadline, if that is sooner). An attempt that runs out of time is
// retried as a Timeout; reading the body of the response that is returned
// is not bounded by it. 0, the default, means no per-attempt timeout. It
// must not be negative. Do ignores it.
func WithAttemptTimeout(d time.Duration) Option { return attemptTimeoutOption(d) }

// WithAttemptHeader makes a Transport set the header name on each attempt
// to the 1-based attempt number ("1", "2", ...), on the attempt's copy of
// the request. The default, "", sets no header. Do ignores it.
func WithAttemptHeader(name string) Option { return attemptHeaderOption(name) }

// WithPrepareRetry makes a Transport call prepare on each retry's request
// (attempt 2 and later) just before it is sent, to re-sign it or to
// refresh a short-lived credential: AWS SigV4 and HMAC signatures carry a
// timestamp, OAuth tokens expire. prepare may change the request's headers
// and URL in place: they are the retry's own copies, so the caller's
// request never changes. It may call GetBody to hash the body; it must not
// read or replace Body. It is never called for the first attempt, and
// never sees the caller's own request. An error it returns stops the
// retries: RoundTrip returns it inside an *Error. prepare must not be nil;
// the default is none. Do ignores it.
func WithPrepareRetry(prepare func(*http.Request) error) Option {
	return prepareRetryOption(prepare)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c < 0x80 && c > ' ' && c != 0x7f && !isSeparator(c):
		default:
			return false
		}
	}
	return true
}

func isSeparator(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=', '{', '}':
		return true
	}
	return false
}
