package retry

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus collectors of this package. Attach it to
// transports with WithMetrics; one Metrics serves any number of them, each
// labelled with its WithName (default "default"). Do ignores it.
//
// The families, with labels that are always bounded (never a URL, path,
// query or host):
//
//	retry_http_attempts_total{client, method, category}  counter: every attempt, by its classification
//	retry_http_retries_total{client, method, category}   counter: every retry, by the category that caused it
//	retry_http_requests_total{client, method, outcome}   counter: every RoundTrip once, by how it ended
//	retry_http_backoff_seconds{client}                   histogram: the waits actually slept
//	retry_http_hedges_total{client, method, result}      counter: every hedge sent (WithHedge), by result: won (its
//	                                                     response was the round's answer) or lost
//	retry_http_resumes_total{client, result}             counter: every resume of a broken response body
//	                                                     (WithResumeBody), by result: ok, mismatch, failed
//
// method is the request's method when it is one of the nine of RFC 9110
// (GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE), else
// "other"; category is Category.String(); outcome is one of ok,
// not_retryable, exhausted, canceled, deadline, retry_after_too_long,
// budget_exhausted, body_not_replayable, request_error (an invalid
// per-request option or an unreadable body, so nothing was sent; or
// WithPrepareRetry failed on a retry).
type Metrics struct {
	attempts *prometheus.CounterVec
	retries  *prometheus.CounterVec
	requests *prometheus.CounterVec
	backoff  *prometheus.HistogramVec
	hedges   *prometheus.CounterVec
	resumes  *prometheus.CounterVec
}

// BackoffBuckets are the buckets of retry_http_backoff_seconds, in seconds.
var BackoffBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64}

// NewMetrics creates the collectors and registers them with reg; nil means
// prometheus.DefaultRegisterer. Calling it again on the same registry (two
// packages, two transports) reuses the collectors already registered
// instead of failing. It returns an error only when reg refuses them for
// another reason (say, a family of the same name with other labels).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_http_attempts_total",
			Help: "HTTP attempts made by retrying transports, by the attempt's classification.",
		}, []string{"client", "method", "category"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_http_retries_total",
			Help: "HTTP retries made by retrying transports, by the category of the failure that caused them.",
		}, []string{"client", "method", "category"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_http_requests_total",
			Help: "HTTP requests (RoundTrip calls) of retrying transports, by how they ended.",
		}, []string{"client", "method", "outcome"}),
		backoff: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "retry_http_backoff_seconds",
			Help:    "Waits slept between HTTP attempts by retrying transports.",
			Buckets: BackoffBuckets,
		}, []string{"client"}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_http_hedges_total",
			Help: "Hedges sent by retrying transports, by whether the hedge's response won the race.",
		}, []string{"client", "method", "result"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retry_http_resumes_total",
			Help: "Resumes of broken response bodies by retrying transports, by result.",
		}, []string{"client", "result"}),
	}
	var err error
	m.attempts, err = register(reg, m.attempts)
	if err == nil {
		m.retries, err = register(reg, m.retries)
	}
	if err == nil {
		m.requests, err = register(reg, m.requests)
	}
	if err == nil {
		m.backoff, err = register(reg, m.backoff)
	}
	if err == nil {
		m.hedges, err = register(reg, m.hedges)
	}
	if err == nil {
		m.resumes, err = register(reg, m.resumes)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		var zero C
		return zero, err
	}
	return c, nil
}

// methods are the method label values; the last is "other".
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace, "other",
}

const numMethods = len(methods)

func methodIndex(m string) int {
	switch m {
	case http.MethodGet, "":
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodConnect:
		return 6
	case http.MethodOptions:
		return 7
	case http.MethodTrace:
		return 8
	}
	return numMethods - 1
}

const numCategories = int(Canceled) + 1

// known maps a category a custom Classifier made up to Unknown.
func known(c Category) Category {
	if c < 0 || int(c) >= numCategories {
		return Unknown
	}
	return c
}

// clientMetrics is a Metrics seen from one client name. Each label child
// is looked up once, on first use, and kept: counting allocates nothing.
// A nil *clientMetrics counts nothing.
type clientMetrics struct {
	m        *Metrics
	client   string
	attempts [numMethods][numCategories]atomic.Pointer[prometheus.Counter]
	retries  [numMethods][numCategories]atomic.Pointer[prometheus.Counter]
	requests [numMethods][numOutcomes]atomic.Pointer[prometheus.Counter]
	hedges   [numMethods][2]atomic.Pointer[prometheus.Counter] // lost, won
	resumes  [numResumeResults]atomic.Pointer[prometheus.Counter]
	backoff  prometheus.Observer
}

func (m *Metrics) forClient(name string) *clientMetrics {
	if name == "" {
		name = "default"
	}
	return &clientMetrics{m: m, client: name, backoff: m.backoff.WithLabelValues(name)}
}

// child returns the counter in slot, looking it up in vec the first time.
func child(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c := slot.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(labels...)
	slot.Store(&c)
	return c
}

func (cm *clientMetrics) attempt(method string, cat Category) {
	if cm == nil {
		return
	}
	cat = known(cat)
	i := methodIndex(method)
	child(&cm.attempts[i][cat], cm.m.attempts, cm.client, methods[i], cat.String()).Inc()
}

func (cm *clientMetrics) retry(method string, cat Category) {
	if cm == nil {
		return
	}
	cat = known(cat)
	i := methodIndex(method)
	child(&cm.retries[i][cat], cm.m.retries, cm.client, methods[i], cat.String()).Inc()
}

func (cm *clientMetrics) request(method string, o outcome) {
	if cm == nil {
		return
	}
	i := methodIndex(method)
	child(&cm.requests[i][o], cm.m.requests, cm.client, methods[i], o.String()).Inc()
}

func (cm *clientMetrics) slept(d time.Duration) {
	if cm == nil {
		return
	}
	cm.backoff.Observe(d.Seconds())
}

// hedgeResults are the result label values of retry_http_hedges_total.
var hedgeResults = [2]string{"lost", "won"}

func (cm *clientMetrics) hedge(method string, won bool) {
	if cm == nil {
		return
	}
	i, r := methodIndex(method), 0
	if won {
		r = 1
	}
	child(&cm.hedges[i][r], cm.m.hedges, cm.client, methods[i], hedgeResults[r]).Inc()
}

// resumeResult is the result label of retry_http_resumes_total.
type resumeResult int

const (
	resumeOK resumeResult = iota
	resumeMismatch
	resumeFailed
	numResumeResults
)

var resumeResults = [numResumeResults]string{"ok", "mismatch", "failed"}

func (cm *clientMetrics) resume(r resumeResult) {
	if cm == nil {
		return
	}
	child(&cm.resumes[r], cm.m.resumes, cm.client, resumeResults[r]).Inc()
}
