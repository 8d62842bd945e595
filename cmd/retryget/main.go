// Command retryget fetches a URL through retry's Transport, like a small
// curl that retries. With no URL it starts an embedded flaky server on
// loopback and fetches from it, so that you can watch the retries:
//
//	go run ./cmd/retryget                         # the demo
//	go run ./cmd/retryget -attempts 5 https://example.com/
//	go run ./cmd/retryget -X POST -d @body.json -H 'Content-Type: application/json' URL
//
// Footprints (JSON lines) go to stderr, the body to stdout (or -o). Exit
// status: 0 for a 2xx/3xx final response; 1 for a final error or a 4xx/5xx
// final response, with a one-line reason on stderr; 2 for bad flags or
// input, with usage.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/httptest_helpers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// demoRetryAfter is the Retry-After of the demo's 429, in seconds.
var demoRetryAfter = "1"

// headers is a repeatable -H flag.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// usageError is bad input: exit status 2, with usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run is the whole command; main only wires the process to it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("retryget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		method         = fs.String("X", "", "request method (default GET, or POST with -d)")
		data           = fs.String("d", "", "request body; @file reads it from a file")
		hdrs           headers
		attempts       = fs.Int("attempts", retry.DefaultMaxAttempts, "attempts in all, the first one included")
		sleep          = fs.Duration("sleep", retry.DefaultSleepTime, "wait before the second attempt")
		backoff        = fs.Float64("backoff", retry.DefaultBackoff, "factor by which each wait grows")
		maxDelay       = fs.Duration("max-delay", retry.DefaultMaxDelay, "cap on every single wait")
		jitter         = fs.String("jitter", "none", "jitter: none, full, equal or decorrelated")
		attemptTimeout = fs.Duration("attempt-timeout", 0, "timeout of each attempt until its headers arrive (0: none)")
		timeout        = fs.Duration("timeout", 0, "timeout of the whole call, all attempts included (0: none)")
		logTries       = fs.Bool("log-tries", false, "write a footprint for every retry, not only when giving up")
		output         = fs.String("o", "", "write the body to this file instead of stdout")
		resume         = fs.Int("resume", 0, "resume a body that breaks in the middle, up to this many times (a GET with a strong validator; 0: off)")
		printMetrics   = fs.Bool("metrics", false, "print the Prometheus exposition to stderr at the end")
		metricsAddr    = fs.String("metrics-addr", "", "serve /metrics on host:port while running")
	)
	fs.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: retryget [flags] [URL]\n\nWith no URL, retryget fetches an embedded flaky server to show retries at work.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "retryget:", err)
		var ue usageError
		if errors.As(err, &ue) {
			fs.Usage()
			return 2
		}
		return 1
	}

	target := fs.Arg(0)
	if fs.NArg() > 1 {
		return fail(usageError{fmt.Sprintf("one URL at most, got %d arguments", fs.NArg())})
	}
	if target == "" {
		// The demo: a server that fails three ways before it answers. The
		// reset comes first, on a fresh connection: on a reused one net/http
		// would replay the GET by itself and the retry would not show.
		srv := httptest_helpers.Start(
			httptest_helpers.Reset(),
			httptest_helpers.Status(http.StatusServiceUnavailable).Body("down for maintenance"),
			httptest_helpers.Status(http.StatusTooManyRequests).Header("Retry-After", demoRetryAfter),
			httptest_helpers.Status(http.StatusOK).Body("hello from the flaky server: you got through after 4 attempts\n"),
		)
		defer srv.Close()
		target = srv.URL + "/demo"
		if !flagSet(fs, "attempts") {
			*attempts = 5
		}
		if !flagSet(fs, "sleep") {
			*sleep = 100 * time.Millisecond
		}
		*logTries = true
		fmt.Fprintf(stderr, "retryget: no URL given, so fetching an embedded flaky server at %s (a connection reset, 503, 429 with Retry-After: %s, then 200) with %d attempts; run `retryget [flags] URL` to fetch a real URL.\n",
			target, demoRetryAfter, *attempts)
	}

	// Check the input before anything goes out.
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(usageError{"not an http(s) URL with a host: " + quote(u)})
	}
	j, err := retry.ParseJitter(*jitter)
	if err != nil {
		return fail(usageError{fmt.Sprintf("-jitter %q: want none, full, equal or decorrelated", *jitter)})
	}
	for name, d := range map[string]time.Duration{"-timeout": *timeout, "-attempt-timeout": *attemptTimeout, "-sleep": *sleep, "-max-delay": *maxDelay} {
		if d < 0 {
			return fail(usageError{fmt.Sprintf("%s %v: must not be negative", name, d)})
		}
	}
	var body []byte
	if *data != "" {
		body = []byte(*data)
		if file, ok := strings.CutPrefix(*data, "@"); ok {
			if body, err = os.ReadFile(file); err != nil {
				return fail(usageError{fmt.Sprintf("-d @%s: %v", file, errors.Unwrap(err))})
			}
		}
	}
	if *method == "" {
		*method = http.MethodGet
		if *data != "" {
			*method = http.MethodPost
		}
	}

	reg := prometheus.NewRegistry()
	metrics, err := retry.NewMetrics(reg)
	if err != nil {
		return fail(err)
	}
	opts := []retry.Option{
		retry.WithMaxAttempts(*attempts), retry.WithSleepTime(*sleep), retry.WithBackoff(*backoff),
		retry.WithMaxDelay(*maxDelay), retry.WithJitter(j), retry.WithAttemptTimeout(*attemptTimeout),
		retry.WithLogTries(*logTries), retry.WithLogger(slog.New(slog.NewJSONHandler(stderr, nil))),
		retry.WithMetrics(metrics), retry.WithResumeBody(*resume),
	}
	if err := retry.CheckOptions(opts...); err != nil {
		return fail(usageError{flagNames(err.Error())})
	}
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fail(usageError{fmt.Sprintf("-metrics-addr %s: %v", *metricsAddr, err)})
		}
		msrv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(ln) }()
		defer msrv.Close()
		fmt.Fprintf(stderr, "retryget: serving metrics at http://%s/metrics\n", ln.Addr())
	}

	req, err := http.NewRequestWithContext(ctx, *method, target, bytes.NewReader(body))
	if err != nil {
		return fail(usageError{err.Error()})
	}
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = nil, nil, 0
	}
	for _, h := range hdrs {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return fail(usageError{fmt.Sprintf("-H %q: want 'Name: value'", h)})
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}

	client := retry.NewClient(opts...)
	client.Timeout = *timeout
	defer client.CloseIdleConnections()
	code := fetch(client, req, *output, stdout, stderr)
	if *printMetrics {
		for _, mf := range must(reg.Gather()) {
			_, _ = expfmt.MetricFamilyToText(stderr, mf)
		}
	}
	return code
}

// fetch sends req and writes the body; it returns the exit status.
func fetch(client *http.Client, req *http.Request, output string, stdout, stderr io.Writer) int {
	resp, err := client.Do(req)
	if err != nil {
		// http.Client puts the URL, query values included, in its error.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s %s: %w", ue.Op, retry.RedactURL(req.URL), ue.Err)
		}
		fmt.Fprintln(stderr, "retryget:", err)
		return 1
	}
	defer resp.Body.Close()
	out := stdout
	if output != "" {
		f, err := os.Create(output)
		if err != nil {
			fmt.Fprintln(stderr, "retryget:", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		fmt.Fprintln(stderr, "retryget: reading the body:", err)
		return 1
	}
	if resp.StatusCode >= 400 {
		fmt.Fprintf(stderr, "retryget: the server answered %s\n", resp.Status)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// flagNames turns an option's name in an error into its flag's.
func flagNames(msg string) string {
	r := strings.NewReplacer("WithMaxAttempts", "-attempts", "WithSleepTime", "-sleep", "WithBackoff", "-backoff",
		"WithMaxDelay", "-max-delay", "WithAttemptTimeout", "-attempt-timeout", "WithResumeBody", "-resume")
	return r.Replace(msg)
}

// quote shows a bad URL without its secrets where it parses at all.
func quote(u *url.URL) string {
	if u != nil {
		return fmt.Sprintf("%q", retry.RedactURL(u))
	}
	return "(unparseable)"
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
