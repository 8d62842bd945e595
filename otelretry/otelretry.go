// Package otelretry traces a retrying transport the way the OpenTelemetry
// HTTP semantic conventions say a retry must look: each physical request
// (each attempt, each hedge, each resume of a body) is a CLIENT span of
// its own, made by otelhttp, and every resend carries
// http.request.resend_count (absent on the first request). The waits
// between attempts are events on the caller's span.
//
//	client := otelretry.NewClient([]retry.Option{retry.WithMaxAttempts(4)})
//	resp, err := client.Do(req.WithContext(ctx)) // ctx carries the caller's span
//
// A trace of a request answered 503, 503, then 200:
//
//	caller span "checkout"
//	├── event retry.wait {retry.attempt=1, retry.category=server_error, retry.delay_s=2}
//	├── event retry.wait {retry.attempt=2, retry.category=server_error, retry.delay_s=4}
//	├── CLIENT span "HTTP GET"  http.response.status_code=503
//	├── CLIENT span "HTTP GET"  http.response.status_code=503  http.request.resend_count=1
//	└── CLIENT span "HTTP GET"  http.response.status_code=200  http.request.resend_count=2
//
// # The composition rule
//
// The retrying transport goes above otelhttp, and otelhttp above the
// network: retry.Transport → otelhttp.Transport → (this package's attempt
// marker) → base. Placed outside a retrying transport, otelhttp makes one
// span for the whole RoundTrip and hides the retries in it; placed inside
// without the marker, it makes one span per attempt but cannot tell a
// resend from a first request. The marker reads retry.AttemptFrom from the
// request's context, which the Transport sets for every attempt after the
// first, and adds the attributes to otelhttp's span. NewTransport builds
// exactly that stack; a stack of your own needs Marker below otelhttp.
package otelretry

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-cleanhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/retrykit/retry"
)

// Attribute keys this package sets.
const (
	// ResendCount is the OpenTelemetry HTTP convention's attribute of a
	// resend: the attempt's number minus one, absent on the first.
	ResendCount = attribute.Key("http.request.resend_count")
	// HedgeKey marks the span of a hedge (see retry.WithHedge).
	HedgeKey = attribute.Key("retry.hedge")
	// WaitEvent is the name of the caller span's event for each wait.
	WaitEvent = "retry.wait"
)

// NewTransport returns a retrying transport (the retryOpts, as for
// retry.NewTransport) whose attempts are each traced by otelhttp (the
// otelOpts, as for otelhttp.NewTransport: WithTracerProvider,
// WithPropagators, …) over base (nil: cleanhttp's pooled transport, as
// retry.NewTransport's default). Each attempt's span carries
// http.request.resend_count from the second on, and retry.hedge on a
// hedge; each wait is a WaitEvent on the span of the request's context, if
// it has one. retryOpts are applied after this package's hook, so that
// they may add hooks of their own. Like retry.NewTransport, it panics on
// an invalid retry option.
func NewTransport(base http.RoundTripper, retryOpts []retry.Option, otelOpts ...otelhttp.Option) *retry.Transport {
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	traced := otelhttp.NewTransport(Marker(base), otelOpts...)
	opts := append([]retry.Option{retry.WithOnRetryContext(RecordWait)}, retryOpts...)
	return retry.NewTransport(traced, opts...)
}

// NewClient returns cleanhttp's pooled client with its transport replaced
// by NewTransport over it.
func NewClient(retryOpts []retry.Option, otelOpts ...otelhttp.Option) *http.Client {
	c := cleanhttp.DefaultPooledClient()
	c.Transport = NewTransport(c.Transport, retryOpts, otelOpts...)
	return c
}

// Marker returns a RoundTripper that marks the span in each request's
// context (otelhttp's, when it sits right below otelhttp) with the
// attempt the request is: http.request.resend_count for a resend, and
// retry.hedge for a hedge. It changes nothing else and allocates nothing
// on a first attempt.
func Marker(base http.RoundTripper) http.RoundTripper { return marker{base} }

type marker struct{ base http.RoundTripper }

func (m marker) RoundTrip(r *http.Request) (*http.Response, error) {
	if a := retry.AttemptFrom(r.Context()); a.Number > 1 || a.Hedge {
		span := trace.SpanFromContext(r.Context())
		if a.Number > 1 {
			span.SetAttributes(ResendCount.Int(a.Number - 1))
		}
		if a.Hedge {
			span.SetAttributes(HedgeKey.Bool(true))
		}
	}
	return m.base.RoundTrip(r)
}

// CloseIdleConnections closes the base's idle connections.
func (m marker) CloseIdleConnections() {
	if c, ok := m.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RecordWait is the hook (for retry.WithOnRetryContext) that adds a
// WaitEvent for ev to the span in ctx: the attempt that failed, its
// category, the delay and the Retry-After the server asked for, in
// seconds (-1: none).
func RecordWait(ctx context.Context, ev retry.Event) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	retryAfter := -1.0
	if ev.RetryAfter >= 0 {
		retryAfter = ev.RetryAfter.Seconds()
	}
	span.AddEvent(WaitEvent, trace.WithAttributes(
		attribute.Int("retry.attempt", ev.Attempt),
		attribute.String("retry.category", ev.Category.String()),
		attribute.Float64("retry.delay_s", ev.Delay.Seconds()),
		attribute.Float64("retry.retry_after_s", retryAfter),
	))
}
