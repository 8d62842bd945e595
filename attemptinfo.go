package retry

import "context"

// AttemptInfo says which attempt of a request a Transport is sending; see
// AttemptFrom.
type AttemptInfo struct {
	// Number is the attempt's 1-based number: 1 for the first, 2 for the
	// first retry (or hedge), and so on, resumes of a body included (see
	// WithResumeBody).
	Number int
	// Hedge is true for a hedge (see WithHedge).
	Hedge bool
}

type attemptKey struct{}

// AttemptFrom returns the attempt that the request carrying ctx is, as a
// Transport sends it: a RoundTripper below a Transport (the base, or a
// wrapper of it such as a tracing one) calls it with the request's context
// to learn which attempt it is sending, to number its spans or logs (the
// OpenTelemetry HTTP conventions set http.request.resend_count to Number-1
// on every resend; see the module otelretry). A context that carries
// nothing is attempt 1, not a hedge: the first attempt costs no allocation
// for this, a retry or a hedge one context value.
func AttemptFrom(ctx context.Context) AttemptInfo {
	if a, ok := ctx.Value(attemptKey{}).(AttemptInfo); ok {
		return a
	}
	return AttemptInfo{Number: 1}
}
