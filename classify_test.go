package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClassifyStatus(t *testing.T) {
	tests := []struct {
		codes []int
		want  Category
	}{
		{[]int{100, 101, 200, 201, 204, 206, 301, 302, 304, 307, 399}, Success},
		{[]int{408}, Timeout},
		{[]int{425, 429}, Throttled},
		{[]int{500, 502, 503, 504, 507, 508, 511, 599}, ServerError},
		{[]int{400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 499, 501, 505}, ClientError},
		{[]int{0, 42, 600, 999}, ClientError},
	}
	for _, tt := range tests {
		for _, code := range tt.codes {
			assert.Equal(t, tt.want, Classify(&http.Response{StatusCode: code}, nil), "status %d", code)
		}
	}
}

// textErr is an error of a type of its own with a given text.
type textErr string

func (e textErr) Error() string { return string(e) }

// proxyRefusal is the error of net/http for a proxy that answered CONNECT
// with code: the reason phrase alone.
func proxyRefusal(code int) error { return errors.New(http.StatusText(code)) }

// proxyConnect wraps err as net/http does an error in reaching a proxy.
func proxyConnect(err error) error { return &net.OpError{Op: "proxyconnect", Net: "tcp", Err: err} }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, err)}
	}
	tests := []struct {
		name string
		err  error
		want Category
	}{
		{"connection refused", opErr("dial", syscall.ECONNREFUSED), DialError},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, DialError},
		{"no route", opErr("dial", syscall.EHOSTUNREACH), DialError},
		{"network unreachable", opErr("dial", syscall.ENETUNREACH), DialError},
		{"no route on read", opErr("read", syscall.EHOSTUNREACH), ConnectionError},
		{"network unreachable on write", opErr("write", syscall.ENETUNREACH), ConnectionError},
		{"bare no route", syscall.EHOSTUNREACH, ConnectionError},
		{"bare network unreachable", syscall.ENETUNREACH, ConnectionError},
		{"refused on read", opErr("read", syscall.ECONNREFUSED), ConnectionError},
		{"proxy dial refused", proxyConnect(opErr("dial", syscall.ECONNREFUSED)), DialError},
		{"proxy dial no route", proxyConnect(opErr("dial", syscall.EHOSTUNREACH)), DialError},
		{"proxy dial timeout", proxyConnect(&net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}), DialError},
		{"proxy DNS failure", proxyConnect(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}}), DialError},
		{"proxy handshake reset", proxyConnect(opErr("read", syscall.ECONNRESET)), ConnectionError},
		{"proxy read no route", proxyConnect(opErr("read", syscall.EHOSTUNREACH)), ConnectionError},
		{"proxy bare refused", proxyConnect(syscall.ECONNREFUSED), DialError},
		{"proxy bare no route", proxyConnect(syscall.EHOSTUNREACH), ConnectionError},
		{"TLS alert from server", &net.OpError{Op: "remote error", Err: tls.AlertError(116)}, Fatal},
		{"TLS alert, untyped", &net.OpError{Op: "remote error", Err: errors.New("tls: internal error")}, Fatal},
		{"TLS alert via proxy", proxyConnect(&net.OpError{Op: "remote error", Err: tls.AlertError(42)}), Fatal},
		{"QUIC TLS alert", fmt.Errorf("%w%.0w", errors.New("handshake failed"), tls.AlertError(40)), Fatal},
		{"proxy CONNECT 503", proxyRefusal(503), ServerError},
		{"proxy CONNECT 502", proxyRefusal(502), ServerError},
		{"proxy CONNECT 504", proxyRefusal(504), ServerError},
		{"proxy CONNECT 429", proxyRefusal(429), Throttled},
		{"proxy CONNECT 501", proxyRefusal(501), Fatal},
		{"proxy CONNECT 505", proxyRefusal(505), Fatal},
		{"proxy CONNECT 407", proxyRefusal(407), Fatal},
		{"proxy CONNECT no status", errors.New("unknown status code"), Fatal},
		{"status text in a longer message", errors.New("upstream: Service Unavailable"), Fatal},
		{"status text of another type", textErr("Service Unavailable"), Fatal},
		{"status text wrapping more", fmt.Errorf("Service Unavailable%.0w", errors.New("x")), Fatal},
		{"HTTP/2 sibling broke the connection", errors.New("http2: client connection force closed via ClientConn.Close"), ConnectionError},
		{"HTTP/2 connection closed under a body", errors.New("http2: client conn is closed"), ConnectionError},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, DialError},
		{"temporary DNS failure", &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, DialError},
		{"DNS timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, DialError},
		{"no such host", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, Fatal},
		{"reset", opErr("read", syscall.ECONNRESET), ConnectionError},
		{"aborted", syscall.ECONNABORTED, ConnectionError},
		{"broken pipe", opErr("write", syscall.EPIPE), ConnectionError},
		{"EOF", io.EOF, ConnectionError},
		{"unexpected EOF", io.ErrUnexpectedEOF, ConnectionError},
		{"closed", net.ErrClosed, ConnectionError},
		{"other read OpError", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("weird")}, ConnectionError},
		{"server closed idle", errors.New("http: server closed idle connection"), ConnectionError},
		{"GOAWAY", errors.New("http2: server sent GOAWAY and closed the connection; LastStreamID=1"), ConnectionError},
		{"stream error", errors.New("stream error: stream ID 3; INTERNAL_ERROR"), ConnectionError},
		{"client connection lost", errors.New("http2: client connection lost"), ConnectionError},
		{"net timeout", &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}, Timeout},
		{"header timeout", timeoutErr{}, Timeout},
		{"deadline", context.DeadlineExceeded, Timeout},
		{"attempt timeout", &attemptTimeoutError{}, Timeout},
		{"spurious canceled", context.Canceled, ConnectionError},
		{"unknown authority", x509.UnknownAuthorityError{}, Fatal},
		{"hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}, Fatal},
		{"invalid cert", x509.CertificateInvalidError{Reason: x509.Expired}, Fatal},
		{"verification", &tls.CertificateVerificationError{Err: errors.New("bad")}, Fatal},
		{"record header", tls.RecordHeaderError{Msg: "not TLS"}, Fatal},
		{"scheme mismatch", http.ErrSchemeMismatch, Fatal},
		{"unsupported scheme", errors.New(`unsupported protocol scheme "ftp"`), Fatal},
		{"unknown error", errors.New("something else"), Fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want.String(), Classify(nil, tt.err).String(), "raw")
			assert.Equal(t, tt.want.String(), Classify(nil, fmt.Errorf("op: %w", tt.err)).String(), "%%w-wrapped")
			assert.Equal(t, tt.want.String(), Classify(nil, &url.Error{Op: "Get", URL: "http://x", Err: tt.err}).String(), "*url.Error")
		})
	}
	assert.Equal(t, Fatal, Classify(nil, nil), "no response and no error")
}

func TestClassifyProxyConnectRefusal(t *testing.T) {
	// Every status with a standard reason phrase: 429 and the 5xx retried
	// from an origin are retried from a proxy too; the rest stay Fatal.
	for code := 100; code < 600; code++ {
		if http.StatusText(code) == "" {
			continue
		}
		want := Fatal
		if code == 429 || code >= 500 && code != 501 && code != 505 {
			want = Classify(&http.Response{StatusCode: code}, nil)
		}
		assert.Equal(t, want.String(), Classify(nil, &url.Error{Op: "Get", URL: "https://x", Err: proxyRefusal(code)}).String(), "CONNECT answered %d", code)
	}
}

func TestClassifyRealDialError(t *testing.T) {
	_, err := http.Get("http://" + closedAddr(t) + "/") //nolint:noctx // loopback probe
	assert.Equal(t, DialError, Classify(nil, err), "%v", err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestCategoryNames(t *testing.T) {
	want := map[Category]string{
		Unknown: "unknown", Success: "success", ClientError: "client_error", Throttled: "throttled",
		ServerError: "server_error", Timeout: "timeout", DialError: "dial_error",
		ConnectionError: "connection_error", Fatal: "fatal", Canceled: "canceled", Category(99): "unknown", Category(-1): "unknown",
	}
	for c, s := range want {
		assert.Equal(t, s, c.String())
	}
	for c := Unknown; c <= Canceled; c++ {
		retryable := c == Throttled || c == ServerError || c == Timeout || c == DialError || c == ConnectionError
		assert.Equal(t, retryable, c.Retryable(), c.String())
	}
}

// fuzzErrors are the error kinds FuzzClassify draws from.
var fuzzErrors = []error{
	nil,
	syscall.ECONNREFUSED,
	&net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}},
	&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true},
	&net.DNSError{Err: "timeout", Name: "x", IsTimeout: true},
	&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
	io.EOF,
	io.ErrUnexpectedEOF,
	timeoutErr{},
	context.DeadlineExceeded,
	x509.UnknownAuthorityError{},
	http.ErrSchemeMismatch,
	errors.New("something else"),
	&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.EHOSTUNREACH)},
	&net.OpError{Op: "remote error", Err: tls.AlertError(116)},
	proxyRefusal(503),
	errors.New("http2: client connection force closed via ClientConn.Close"),
	context.Canceled, // not the caller's: its context is live
	proxyConnect(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
	proxyRefusal(429),
}

// FuzzClassify checks the classifier and the retry decision built on it
// over (status, method, error kind, wrapping): the category is one of the
// constants, and a request is retried exactly when its category is
// retryable and the idempotency rule allows it.
func FuzzClassify(f *testing.F) {
	f.Add(503, "POST", uint8(0), uint8(0))
	f.Add(500, "GET", uint8(0), uint8(1))
	f.Add(200, "PATCH", uint8(5), uint8(2))
	f.Add(429, "DELETE", uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, status int, method string, kind, wrap uint8) {
		err := fuzzErrors[int(kind)%len(fuzzErrors)]
		if err != nil {
			switch wrap % 3 {
			case 1:
				err = fmt.Errorf("op: %w", err)
			case 2:
				err = &url.Error{Op: "Get", URL: "http://x", Err: err}
			}
		}
		var resp *http.Response
		if err == nil {
			resp = &http.Response{StatusCode: status, Status: strconv.Itoa(status), Header: http.Header{}, Body: http.NoBody}
		}
		cat := Classify(resp, err)
		if cat < Unknown || cat > Canceled || cat.String() == "unknown" {
			t.Fatalf("Classify(%d, %v) = %d", status, err, cat)
		}
		if cat == Canceled {
			t.Fatalf("Classify(%d, %v) = Canceled: that is the Transport's to decide", status, err)
		}
		if !validMethod(method) {
			return
		}
		req, rerr := http.NewRequestWithContext(t.Context(), method, "http://svc/", nil)
		if rerr != nil {
			return
		}
		idempotent := isIdempotent(req)
		_, proxyRefused := proxyConnectStatus(err) // the request never left the client
		provablyUnprocessed := cat == DialError || resp != nil && (status == 429 || status == 503) || proxyRefused
		want := cat.Retryable() && (idempotent || provablyUnprocessed)

		base := &fakeBase{script: []reply{func(*http.Request) (*http.Response, error) {
			if resp != nil {
				r := *resp
				return &r, nil
			}
			return nil, err
		}}}
		_, _ = NewTransport(base, WithMaxAttempts(2), WithSleepTime(0), WithBudget(nil), discard).RoundTrip(req)
		if got := base.Calls() == 2; got != want {
			t.Fatalf("%s, status %d, error %v: category %v, retried %v, want %v", method, status, err, cat, got, want)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", rune(c)) {
			return false
		}
	}
	return true
}

func TestMayRetry(t *testing.T) {
	proxyRefused := &url.Error{Op: "Post", URL: "https://svc/", Err: errors.New("Service Unavailable")}
	tests := []struct {
		name   string
		method string
		header []string // key, value (nil value: present with no value)
		resp   int      // 0: no response
		err    error
		cat    Category
		want   bool
	}{
		{"GET reset", "GET", nil, 0, syscall.ECONNRESET, ConnectionError, true},
		{"empty method is GET", "", nil, 500, nil, ServerError, true},
		{"DELETE 500", "DELETE", nil, 500, nil, ServerError, true},
		{"POST reset", "POST", nil, 0, syscall.ECONNRESET, ConnectionError, false},
		{"POST 500", "POST", nil, 500, nil, ServerError, false},
		{"POST 503", "POST", nil, 503, nil, ServerError, true},
		{"POST 429", "POST", nil, 429, nil, Throttled, true},
		{"POST dial error", "POST", nil, 0, syscall.ECONNREFUSED, DialError, true},
		{"POST proxy refused CONNECT", "POST", nil, 0, proxyRefused, ServerError, true},
		{"POST with Idempotency-Key", "POST", []string{"Idempotency-Key", "k1"}, 500, nil, ServerError, true},
		{"POST with an empty Idempotency-Key", "POST", []string{"Idempotency-Key", ""}, 500, nil, ServerError, true},
		{"PATCH with X-Idempotency-Key", "PATCH", []string{"X-Idempotency-Key", "k1"}, 0, syscall.ECONNRESET, ConnectionError, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &http.Request{Method: tt.method, Header: http.Header{}}
			if tt.header != nil {
				req.Header[tt.header[0]] = nil // present, as net/http reads it
				if tt.header[1] != "" {
					req.Header.Set(tt.header[0], tt.header[1])
				}
			}
			var resp *http.Response
			if tt.resp != 0 {
				resp = &http.Response{StatusCode: tt.resp}
			}
			assert.Equal(t, tt.want, mayRetry(req, resp, tt.err, tt.cat))
		})
	}
}
