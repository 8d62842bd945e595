package retry

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	return m, reg
}

func TestMetricsScriptedScenario(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestMetrics(t)
		base := &fakeBase{script: []reply{respond(503), respond(503), respond(200)}}
		tr := NewTransport(base, append(fast, WithMetrics(m), WithName("billing"))...)
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		resp.Body.Close()

		assert.Equal(t, 2.0, testutil.ToFloat64(m.attempts.WithLabelValues("billing", "GET", "server_error")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.attempts.WithLabelValues("billing", "GET", "success")))
		assert.Equal(t, 2.0, testutil.ToFloat64(m.retries.WithLabelValues("billing", "GET", "server_error")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("billing", "GET", "ok")))
		assert.Equal(t, 1, testutil.CollectAndCount(m.requests), "one series: nothing else was counted")

		want := `
# HELP retry_http_backoff_seconds Waits slept between HTTP attempts by retrying transports.
# TYPE retry_http_backoff_seconds histogram
retry_http_backoff_seconds_bucket{client="billing",le="0.001"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.005"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.01"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.05"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.1"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.25"} 0
retry_http_backoff_seconds_bucket{client="billing",le="0.5"} 0
retry_http_backoff_seconds_bucket{client="billing",le="1"} 1
retry_http_backoff_seconds_bucket{client="billing",le="2"} 2
retry_http_backoff_seconds_bucket{client="billing",le="4"} 2
retry_http_backoff_seconds_bucket{client="billing",le="8"} 2
retry_http_backoff_seconds_bucket{client="billing",le="16"} 2
retry_http_backoff_seconds_bucket{client="billing",le="32"} 2
retry_http_backoff_seconds_bucket{client="billing",le="64"} 2
retry_http_backoff_seconds_bucket{client="billing",le="+Inf"} 2
retry_http_backoff_seconds_sum{client="billing"} 3
retry_http_backoff_seconds_count{client="billing"} 2
`
		assert.NoError(t, testutil.CollectAndCompare(m.backoff, strings.NewReader(want)))
	})
}

func TestMetricsEveryOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reg := newTestMetrics(t)
		opts := append(fast, WithMetrics(m), WithName("c"))
		roundTrip := func(base http.RoundTripper, req *http.Request, extra ...Option) {
			resp, _ := NewTransport(base, append(opts, extra...)...).RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
		}
		get := func() *http.Request { return newReq(t, "GET", "http://svc/", nil) }

		roundTrip(&fakeBase{script: []reply{respond(200)}}, get())
		roundTrip(&fakeBase{script: []reply{respond(404)}}, get())
		roundTrip(&fakeBase{script: []reply{respond(503)}}, get())
		canceled, cancel := context.WithCancel(t.Context())
		cancel()
		roundTrip(&fakeBase{script: []reply{respond(200)}}, get().WithContext(canceled))
		short, cancel2 := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel2()
		roundTrip(&fakeBase{script: []reply{respond(503)}}, get().WithContext(short))
		roundTrip(&fakeBase{script: []reply{respond(429, "Retry-After", "3600")}}, get())
		roundTrip(&fakeBase{script: []reply{respond(503)}}, get(), WithBudget(&Budget{MinPerSecond: 0.0001}))
		big := newReq(t, "PUT", "http://svc/", &opaqueBody{Reader: strings.NewReader(strings.Repeat("x", 100))})
		roundTrip(&fakeBase{script: []reply{respond(503)}}, big, WithMaxBufferedBody(10))
		roundTrip(&fakeBase{script: []reply{respond(200)}}, newReq(t, "PROPFIND", "http://svc/", nil))
		roundTrip(&fakeBase{script: []reply{respond(200)}}, get().WithContext(WithRequestOptions(t.Context(), WithMaxAttempts(0))))
		// A 429 with Retry-After starts the host's cooldown; a request whose
		// deadline comes first is then not sent.
		cooling := NewTransport(&fakeBase{script: []reply{respond(429, "Retry-After", "10")}}, append(opts, WithMaxAttempts(1))...)
		post := func() *http.Request { return newReq(t, "POST", "http://svc/", nil) }
		resp, err := cooling.RoundTrip(post())
		require.NoError(t, err)
		resp.Body.Close()
		soon, cancel3 := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel3()
		_, err = cooling.RoundTrip(post().WithContext(soon))
		require.ErrorIs(t, err, ErrHostCoolingDown)

		for _, o := range outcomeNames {
			method := "GET"
			switch o {
			case "body_not_replayable":
				method = "PUT"
			case "cooldown":
				method = "POST"
			}
			assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("c", method, o)), o)
		}
		assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("c", "other", "ok")), "non-standard methods are labelled other")

		problems, err := testutil.GatherAndLint(reg)
		require.NoError(t, err)
		assert.Empty(t, problems)
		promtoolCheck(t, reg)
	})
}

// promtoolCheck runs `promtool check metrics` on the registry's exposition
// when promtool is installed (.ci/run installs it).
func promtoolCheck(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: skipping `promtool check metrics`")
		return
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&buf, mf)
		require.NoError(t, err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "promtool check metrics: %s", out)
}

func TestNewMetricsTwiceReuses(t *testing.T) {
	m1, reg := newTestMetrics(t)
	m2, err := NewMetrics(reg)
	require.NoError(t, err)
	assert.Same(t, m1.attempts, m2.attempts)
	assert.Same(t, m1.backoff, m2.backoff)

	// A clashing family is an error, not a panic.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "retry_http_attempts_total", Help: "other"}))
	_, err = NewMetrics(reg2)
	assert.Error(t, err)
}

func TestMetricsDefaultRegisterer(t *testing.T) {
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	m2, err := NewMetrics(prometheus.DefaultRegisterer)
	require.NoError(t, err)
	assert.Same(t, m.requests, m2.requests)
}

func TestMetricsAddNoAllocation(t *testing.T) {
	m, _ := newTestMetrics(t)
	base := newMemBase()
	tr := NewTransport(base, WithMetrics(m))
	req := newReq(t, "GET", "http://svc/", nil)
	_, _ = tr.RoundTrip(req) // resolve the label children
	assert.Zero(t, testing.AllocsPerRun(200, func() { _, _ = tr.RoundTrip(req) }))
	assert.Equal(t, 202.0, testutil.ToFloat64(m.requests.WithLabelValues("default", "GET", "ok")), "AllocsPerRun runs once more to warm up")
}

func TestMetricsUnknownCategoryFromCustomClassifier(t *testing.T) {
	m, _ := newTestMetrics(t)
	odd := func(*http.Response, error) Category { return Category(77) }
	_, _ = NewTransport(&fakeBase{script: []reply{respond(200)}}, WithMetrics(m), WithClassifier(odd)).RoundTrip(newReq(t, "GET", "http://svc/", nil))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.attempts.WithLabelValues("default", "GET", "unknown")))
}
