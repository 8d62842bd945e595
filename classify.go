package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
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
	// DialError: the connection could not be made, so the request was
	// never sent (connection refused, no route, dial timeout, a temporary
	// DNS failure).
	DialError
	// ConnectionError: the connection failed with the request in flight
	// (reset, broken pipe, EOF, closed connection, HTTP/2 GOAWAY or stream
	// errors). The server may have processed the request.
	ConnectionError
	// Fatal: retrying cannot help (certificate problems, unsupported
	// scheme, invalid header, malformed response, DNS "no such host"), or
	// the error is not one the classifier recognises.
	Fatal
	// Canceled: the caller's context ended.
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
// and errors.As, in this order:
//   - certificate errors (x509.UnknownAuthorityError, x509.HostnameError,
//     x509.CertificateInvalidError, *tls.CertificateVerificationError,
//     tls.RecordHeaderError), http.ErrSchemeMismatch: Fatal;
//   - *net.DNSError: "no such host" is Fatal, any other DialError;
//   - *net.OpError with Op "dial" (a dial timeout too), ECONNREFUSED,
//     ENETUNREACH, EHOSTUNREACH: DialError;
//   - an error with Timeout() true, context.DeadlineExceeded: Timeout;
//   - ECONNRESET, ECONNABORTED, EPIPE, io.EOF, io.ErrUnexpectedEOF,
//     net.ErrClosed, any other *net.OpError: ConnectionError;
//   - context.Canceled (not the caller's): Canceled.
//
// net/http exports no type for some errors, so these are matched by their
// text: "unsupported protocol scheme", "invalid header field",
// "malformed HTTP" (Fatal); "server closed idle connection", "http2: server
// sent GOAWAY", "stream error", "client connection lost" (ConnectionError).
// Any other error is Fatal: an error the classifier does not understand is
// not retried. Wrap Classify in a Classifier of your own to change that.
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
	// Certificates and protocol mismatches: the next attempt fails the same way.
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalidCert      x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalidCert) || errors.As(err, &verification) ||
		errors.As(err, &recordHeader) || errors.Is(err, http.ErrSchemeMismatch) {
		return Fatal
	}

	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return Fatal
		}
		return DialError
	}
	var opErr *net.OpError
	isOp := errors.As(err, &opErr)
	if isOp && opErr.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
		return DialError
	}

	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}

	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isOp {
		return ConnectionError
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}

	// net/http exports no type for these; match the text it uses.
	msg := err.Error()
	for _, s := range [...]string{"server closed idle connection", "http2: server sent GOAWAY", "stream error", "client connection lost"} {
		if strings.Contains(msg, s) {
			return ConnectionError
		}
	}
	return Fatal
}
