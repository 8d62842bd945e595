package otelretry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/retrykit/retry"
	h "github.com/retrykit/retry/httptest_helpers"
	"github.com/retrykit/retry/otelretry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var quiet = retry.WithLogger(slog.New(slog.DiscardHandler))

// tracing returns a tracer provider that records every ended span, and the
// otelhttp options that use it with W3C trace context.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder, []otelhttp.Option) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec, []otelhttp.Option{otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})}
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// clientSpans returns the ended CLIENT spans, in the order they started.
func clientSpans(rec *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var spans []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			spans = append(spans, s)
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].StartTime().Before(spans[j].StartTime()) })
	return spans
}

// A request answered 503, 503, 200: three CLIENT spans, children of the
// caller's span, with http.request.resend_count absent, 1, 2; each ended
// (the drained 503s too); a different traceparent on each attempt; the two
// waits as events of the caller's span.
func TestSpanPerAttempt(t *testing.T) {
	tp, rec, otelOpts := tracing(t)
	srv := h.NewServer(t, h.Status(503), h.Status(503), h.Status(200).Body("ok"))
	client := otelretry.NewClient([]retry.Option{quiet, retry.WithSleepTime(time.Millisecond), retry.WithJitter(retry.NoJitter)}, otelOpts...)
	defer client.CloseIdleConnections()

	ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/x", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	assert.Len(t, clientSpans(rec), 2, "the two 503s' spans ended (their bodies were drained and closed); the answer's is open")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, "ok", string(body))
	caller.End()

	spans := clientSpans(rec)
	require.Len(t, spans, 3, "one CLIENT span per attempt, each ended")
	seen := map[string]bool{}
	for i, s := range spans {
		assert.Equal(t, caller.SpanContext().SpanID(), s.Parent().SpanID(), "a child of the caller's span")
		rc, ok := attr(s, otelretry.ResendCount)
		if i == 0 {
			assert.False(t, ok, "no resend_count on the first request")
		} else {
			require.True(t, ok, "attempt %d", i+1)
			assert.Equal(t, int64(i), rc.AsInt64())
		}
		seen[s.SpanContext().SpanID().String()] = true
	}
	var parents []string
	for _, r := range srv.Requests() {
		tp := r.Header.Get("Traceparent")
		require.NotEmpty(t, tp)
		parents = append(parents, tp)
		assert.True(t, seen[tp[36:52]], "the server saw the span of an attempt: %s", tp)
	}
	assert.Len(t, parents, 3)
	assert.NotEqual(t, parents[0], parents[1])
	assert.NotEqual(t, parents[1], parents[2])

	var callerSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "caller" {
			callerSpan = s
		}
	}
	require.NotNil(t, callerSpan)
	var delays []float64
	for _, e := range callerSpan.Events() {
		if e.Name == otelretry.WaitEvent {
			for _, a := range e.Attributes {
				if a.Key == "retry.delay_s" {
					delays = append(delays, a.Value.AsFloat64())
				}
			}
		}
	}
	assert.Equal(t, []float64{0.001, 0.002}, delays, "a wait event per retry, with its delay")
}

// A hedge's span is marked; the cancelled loser's span ends with an error.
func TestHedgeSpans(t *testing.T) {
	_, rec, otelOpts := tracing(t)
	first := make(chan struct{})
	srv := h.NewServer(t, h.Func(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the first attempt hangs until cancelled
		close(first)
	}), h.Status(200).Body("fast"))
	tr := otelretry.NewTransport(nil, []retry.Option{quiet, retry.WithHedge(&retry.Hedge{Delay: 20 * time.Millisecond})}, otelOpts...)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", srv.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	<-first

	spans := clientSpans(rec)
	require.Len(t, spans, 2)
	_, hedge0 := attr(spans[0], otelretry.HedgeKey)
	hv, hedge1 := attr(spans[1], otelretry.HedgeKey)
	assert.False(t, hedge0)
	assert.True(t, hedge1 && hv.AsBool(), "the hedge is marked")
	rc, ok := attr(spans[1], otelretry.ResendCount)
	assert.True(t, ok)
	assert.Equal(t, int64(1), rc.AsInt64())
	assert.Equal(t, codes.Error, spans[0].Status().Code, "the cancelled loser's span ends with an error")
	assert.NotEqual(t, codes.Error, spans[1].Status().Code)
}

// okBase answers 200 from memory.
type okBase struct{}

func (okBase) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// With no tracer provider set (the global no-op), this module adds at most
// one allocation to a successful request over otelhttp alone.
func TestOverheadOverOtelhttp(t *testing.T) {
	req, err := http.NewRequest("GET", "http://svc/x", nil)
	require.NoError(t, err)
	measure := func(rt http.RoundTripper) float64 {
		return testing.AllocsPerRun(500, func() {
			resp, err := rt.RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
			}
		})
	}
	alone := measure(otelhttp.NewTransport(okBase{}))
	withRetry := measure(otelretry.NewTransport(okBase{}, []retry.Option{quiet}))
	t.Logf("allocations: otelhttp alone %v, otelretry %v", alone, withRetry)
	assert.LessOrEqual(t, withRetry, alone+1)
}

func BenchmarkOverhead(b *testing.B) {
	req, _ := http.NewRequest("GET", "http://svc/x", nil)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"otelhttp", otelhttp.NewTransport(okBase{})},
		{"otelretry", otelretry.NewTransport(okBase{}, []retry.Option{quiet})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
			}
		})
	}
}
