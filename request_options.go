package retry

import "context"

// requestOptionsKey is the context key of WithRequestOptions.
type requestOptionsKey struct{}

// WithRequestOptions returns a copy of ctx that carries opts: every Do,
// DoErr, Wrap-ped call and Transport.RoundTrip that runs with the returned
// context (or a context derived from it) applies opts on top of its own
// options, for that call only. Use it for the one request that needs 1
// attempt, or 6, without building a second client:
//
//	ctx := retry.WithRequestOptions(ctx, retry.WithMaxAttempts(1))
//	req, _ := http.NewRequestWithContext(ctx, "POST", url, body)
//
// Calling it again on a derived context adds to the options already
// carried; as everywhere, the last of two equal options wins. A call made
// inside fn with the same context (a nested Do, or an SDK's HTTP request)
// applies them too.
//
// An invalid option is reported when the options are applied: RoundTrip
// closes the request body and returns an error wrapping ErrInvalidOption
// without sending anything; Do returns that error without calling fn.
//
// WithMetrics or WithName here select another metrics client for the
// request (each such request resolves its label values anew, which costs
// about as much as a retry); WithBudget here makes the call spend from that
// budget instead.
func WithRequestOptions(ctx context.Context, opts ...Option) context.Context {
	prev := requestOptions(ctx)
	all := make([]Option, 0, len(prev)+len(opts))
	all = append(append(all, prev...), opts...)
	return context.WithValue(ctx, requestOptionsKey{}, all)
}

// requestOptions returns the options ctx carries, or nil.
func requestOptions(ctx context.Context) []Option {
	opts, _ := ctx.Value(requestOptionsKey{}).([]Option)
	return opts
}

// applyRequestOptions applies the options of WithRequestOptions to c, a
// copy of a built config, and resolves the metrics client again if they
// changed it.
func (c *config) applyRequestOptions(opts []Option) {
	name, src := c.name, c.metricsSrc
	for _, o := range opts {
		c.apply(o)
	}
	if c.metricsSrc != nil && (c.name != name || c.metricsSrc != src) {
		c.metrics = c.metricsSrc.forClient(c.name)
	} else if c.metricsSrc == nil {
		c.metrics = nil
	}
}

// applyCallOptions is applyRequestOptions for Do, DoErr and Wrap, which
// count nothing in metrics whatever the options say (they are HTTP
// metrics).
func (c *config) applyCallOptions(opts []Option) {
	c.applyRequestOptions(opts)
	c.metrics = nil
}
