package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"syscall"
)

// A Category is what one attempt's outcome says about retrying it.
type Category int

// The categories. Retryable reports which of them are worth another attempt.
const (
	// Unknown is the zero value: the outcome was not classified. Do reports
	// it, since it does not classify errors (WithRetryOn and WithRetryIf
	// decide there).
	Unknown Category = iota
	// Success: a 1xx, 2xx or 3xx response.
	Success
	// ClientError: a 4xx response other than 408, 425 and 429, or 501 or
	// 505: the same request would fail again.
	ClientError
	// Throttled: 425 Too Early or 429 Too Many Requests.
	Throttled
	// ServerError: 500, 502, 503, 504 and every other 5xx but 501 and 505.
	ServerError
	// Timeout: 408 Request Timeout, or a timeout while the request was in
	// flight (net.Error Timeout, the base's ResponseHeaderTimeout, the
	// per-attempt timeout).
	Timeout
	// DialError: the connection, to the server or to the proxy, could not
	// be made, so the request was never sent (connection refused, no
	// route, dial timeout, a temporary DNS failure).
	DialError
	// ConnectionError: the connection failed with the request possibly in
	// flight (reset, broken pipe, EOF, closed connection, no route on an
	// established connection, HTTP/2 GOAWAY, stream errors or a connection
	// closed under the request). The server may have processed the
	// request.
	ConnectionError
	// Fatal: retrying cannot help (certificate problems, a TLS alert from
	// the peer, unsupported scheme, invalid header, malformed response, DNS
	// "no such host"), or the error is not one the classifier recognises.
	Fatal
	// Canceled: the caller's context ended. The Transport decides this
	// from the request's context; Classify never returns it.
	Canceled
)

var categoryNames = [...]string{
	Unknown:         "unknown",
	Success:         "success",
	ClientError:     "client_error",
	Throttled:       "throttled",
	ServerError:     "server_error",
	Timeout:         "timeout",
	DialError:       "dial_error",
	ConnectionError: "connection_error",
	Fatal:           "fatal",
	Canceled:        "canceled",
}

// String returns the category's name in snake case, as used in footprints
// and metric labels: "success", "server_error", "dial_error", ...
func (c Category) String() string {
	if c < 0 || int(c) >= len(categoryNames) {
		return "unknown"
	}
	return categoryNames[c]
}

// Retryable reports whether an attempt with this outcome may be retried:
// true for Throttled, ServerError, Timeout, DialError and ConnectionError.
// Whether it is retried also depends on the request's method (see
// Transport).
func (c Category) Retryable() bool {
	switch c {
	case Throttled, ServerError, Timeout, DialError, ConnectionError:
		return true
	}
	return false
}

// A Classifier maps one attempt's outcome, the base RoundTripper's response
// or error (exactly one of them non-nil), to a Category. It must not read
// or close the response body. Whether the caller gave up is decided by the
// Transport from the request's context before the classifier is called.
type Classifier func(*http.Response, error) Category

// Classify is the default Classifier. For a response it goes by the
// status code alone:
//
//	1xx–3xx                          Success
//	408                              Timeout
//	425, 429                         Throttled
//	501, 505, other 4xx              ClientError
//	other 5xx (500, 502, 503, 504…)  ServerError
//	below 100 or above 599           ClientError (not retried)
//
// For an error it looks through *url.Error and %w wrapping with errors.Is
// and errors.As. "The op" below is the outermost *net.OpError in the chain,
// or, when that is net/http's Op "proxyconnect" (an error in reaching a
// proxy) and wraps another *net.OpError, that one. In this order:
//   - certificate errors (x509.UnknownAuthorityError, x509.HostnameError,
//     x509.CertificateInvalidError, *tls.CertificateVerificationError,
//     tls.RecordHeaderError), TLS alerts (tls.AlertError, or an op "remote
//     error", which is how crypto/tls reports an alert from the peer),
//     http.ErrSchemeMismatch: Fatal;
//   - *net.DNSError: "no such host" is Fatal, any other DialError;
//   - an op "dial" (a dial timeout too, and a proxy's failed dial), or
//     ECONNREFUSED outside any op or under "proxyconnect": DialError. Only
//     the dial proves the request was not sent: Linux also reports
//     EHOSTUNREACH and ENETUNREACH on an established connection, and TCP
//     reports ECONNREFUSED only for a refused connect, so on a read or
//     write it comes from a datagram socket, after the request may have
//     gone out;
//   - an error with Timeout() true, context.DeadlineExceeded: Timeout;
//   - any other op, ECONNRESET, ECONNABORTED, EPIPE, EHOSTUNREACH,
//     ENETUNREACH, ECONNREFUSED, io.EOF, io.ErrUnexpectedEOF,
//     net.ErrClosed: ConnectionError;
//   - context.Canceled: ConnectionError. The Transport has ruled out the
//     caller's cancel (from the request's context) and the per-attempt
//     timeout (its own error) before it calls the classifier, and net/http
//     sometimes fails a live request with context.Canceled.
//
// net/http exports no type for some errors, so these are matched by their
// text. A proxy that refuses CONNECT (to an https URL) yields, in Go 1.26,
// errors.New of its status line's reason phrase alone: an error of exactly
// that type, last in the chain, whose whole text is the standard reason
// phrase of 429 or of a 5xx but 501 and 505 ("Service Unavailable") is
// classified as that status would be (Throttled, ServerError); another
// reason phrase or status is Fatal. Within the message: "unsupported
// protocol scheme", "invalid header field", "malformed HTTP" (Fatal);
// "server closed idle connection", "http2: server sent GOAWAY", "stream
// error", "client connection lost", "http2: client connection force closed
// via ClientConn.Close" (a failed write of another request on the HTTP/2
// connection closed it), "http2: client conn is closed" (ConnectionError).
// Any other error is Fatal: an error the classifier does not understand is
// not retried. Wrap Classify in a Classifier of your own to change that.
// Classify is pure: it reads no clock and does no I/O.
func Classify(resp *http.Response, err error) Category {
	if err == nil {
		if resp == nil {
			return Fatal
		}
		return classifyStatus(resp.StatusCode)
	}
	return classifyError(err)
}

func classifyStatus(code int) Category {
	switch {
	case code >= 100 && code < 400:
		return Success
	case code == http.StatusRequestTimeout:
		return Timeout
	case code == http.StatusTooEarly || code == http.StatusTooManyRequests:
		return Throttled
	case code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported:
		return ClientError
	case code >= 500 && code < 600:
		return ServerError
	}
	return ClientError
}

func classifyError(err error) Category {
	// Certificates, TLS alerts and protocol mismatches: the next attempt
	// fails the same way.
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalidCert      x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalidCert) || errors.As(err, &verification) ||
		errors.As(err, &recordHeader) || errors.As(err, &alert) ||
		errors.Is(err, http.ErrSchemeMismatch) {
		return Fatal
	}
	// op is the outermost *net.OpError; for an error in reaching a proxy
	// ("proxyconnect"), the one it wraps, if any.
	var op *net.OpError
	isOp := errors.As(err, &op)
	if isOp && op.Op == "proxyconnect" {
		var inner *net.OpError
		if errors.As(op.Err, &inner) {
			op = inner
		}
	}
	// crypto/tls reports an alert from the peer as Op "remote error" (its
	// alert type is unexported).
	if isOp && op.Op == "remote error" {
		return Fatal
	}

	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return Fatal
		}
		return DialError
	}
	// Only the dial proves that nothing was sent: EHOSTUNREACH and
	// ENETUNREACH also end established connections. TCP reports
	// ECONNREFUSED only for a refused connect, which Go reports as a dial;
	// on a read or write it comes from a datagram socket (an ICMP port
	// unreachable), after the request may have gone out.
	if isOp && op.Op == "dial" ||
		(!isOp || op.Op == "proxyconnect") && errors.Is(err, syscall.ECONNREFUSED) {
		return DialError
	}

	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}

	// context.Canceled here is not the caller's (the Transport checked its
	// context first) nor the attempt's timeout (its own error type): net/http
	// sometimes fails a live request with it.
	if isOp || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return ConnectionError
	}

	if code, ok := proxyConnectStatus(err); ok {
		return classifyStatus(code)
	}
	// net/http exports no type for these; match the text it uses.
	msg := err.Error()
	for _, s := range connectionErrorTexts {
		if strings.Contains(msg, s) {
			return ConnectionError
		}
	}
	return Fatal
}

// connectionErrorTexts are the texts of net/http's unexported errors of a
// connection that failed with the request in flight.
var connectionErrorTexts = [...]string{
	"server closed idle connection",
	"http2: server sent GOAWAY",
	"stream error",
	"client connection lost",
	"http2: client connection force closed via ClientConn.Close",
	"http2: client conn is closed",
}

// proxyRetryStatuses are the answers of a proxy to CONNECT that are
// retried: those retried from an origin, but 408 and 425.
var proxyRetryStatuses = [...]int{
	http.StatusTooManyRequests,
	http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
	http.StatusGatewayTimeout, http.StatusVariantAlsoNegotiates, http.StatusInsufficientStorage,
	http.StatusLoopDetected, http.StatusNotExtended, http.StatusNetworkAuthenticationRequired,
}

// errorStringType is the type of errors.New's errors.
var errorStringType = reflect.TypeOf(errors.New(""))

// proxyConnectStatus recognises a proxy's refusal of CONNECT with one of
// proxyRetryStatuses. net/http reports it as errors.New of the status
// line's text after the code ("Service Unavailable"), with no type or code
// to go by, so this matches only an error of that type, at the end of the
// chain, whose text is exactly a status's standard text.
func proxyConnectStatus(err error) (int, bool) {
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	if reflect.TypeOf(err) != errorStringType {
		return 0, false
	}
	msg := err.Error()
	for _, code := range proxyRetryStatuses {
		if msg == http.StatusText(code) {
			return code, true
		}
	}
	return 0, false
}

// mayRetry is the idempotency rule: whether req may be sent again after an
// attempt that failed with the retryable category cat (resp or err being
// that attempt's result). An idempotent request may (see isIdempotent);
// any other only when the server provably did not process it: the
// connection was never made (DialError), the server said so (429, 503), or
// a proxy refused the tunnel to it (a CONNECT answered 429 or 5xx, so the
// request never left the client).
func mayRetry(req *http.Request, resp *http.Response, err error, cat Category) bool {
	switch {
	case isIdempotent(req), cat == DialError:
		return true
	case resp != nil:
		return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
	}
	_, refused := proxyConnectStatus(err)
	return refused
}

// isIdempotent reports whether req may be sent twice with the effect of
// once: its method is GET, HEAD, OPTIONS, TRACE, PUT or DELETE (RFC 9110,
// section 9.2.2), or it carries an Idempotency-Key or X-Idempotency-Key
// header. As in net/http, a key that is present counts even when its value
// is empty (the Prometheus API client marks its read POSTs so).
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}
