package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/httptest_helpers"
)

// quiet keeps the examples' output free of footprints.
var quiet = retry.WithLogger(slog.New(slog.DiscardHandler))

func ExampleDo() {
	calls := 0
	v, err := retry.Do(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		if calls < 3 {
			return "", errors.New("temporarily unavailable")
		}
		return "hello", nil
	}, retry.WithSleepTime(time.Millisecond))
	fmt.Println(v, err, calls)
	// Output: hello <nil> 3
}

func ExampleDo_givingUp() {
	_, err := retry.Do(context.Background(), func(ctx context.Context) (int, error) {
		return 0, errors.New("connection refused")
	}, retry.WithSleepTime(time.Millisecond), quiet)
	var re *retry.Error
	fmt.Println(errors.As(err, &re), re.Attempts)
	fmt.Println(err)
	// Output:
	// true 3
	// retry: giving up after 3 attempts: connection refused
}

func ExampleWrap() {
	calls := 0
	fetch := retry.Wrap(func(ctx context.Context) (int, error) {
		calls++
		if calls == 1 {
			return 0, errors.New("timeout")
		}
		return 42, nil
	}, retry.WithMaxAttempts(5), retry.WithSleepTime(time.Millisecond))

	v, err := fetch(context.Background())
	fmt.Println(v, err, calls)
	// Output: 42 <nil> 2
}

var errRetryable = errors.New("retryable")

func ExampleWithRetryOn() {
	calls := 0
	_, err := retry.Do(context.Background(), func(ctx context.Context) (int, error) {
		calls++
		if calls == 1 {
			return 0, fmt.Errorf("operation returned nothing: %w", errRetryable)
		}
		return 0, errors.New("invalid result") // not retried
	}, retry.WithRetryOn(errRetryable), retry.WithSleepTime(time.Millisecond))
	fmt.Println(err, calls)
	// Output: invalid result 2
}

func ExamplePermanent() {
	calls := 0
	errNotFound := errors.New("not found")
	_, err := retry.Do(context.Background(), func(ctx context.Context) (int, error) {
		calls++
		return 0, retry.Permanent(errNotFound)
	})
	fmt.Println(err == errNotFound, calls)
	// Output: true 1
}

func ExampleWithLogTries() {
	logger := slog.New(slog.NewJSONHandler(stdout{}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	_ = retry.DoErr(context.Background(), func(ctx context.Context) error {
		return errors.New("connection refused")
	}, retry.WithMaxAttempts(2), retry.WithSleepTime(time.Millisecond),
		retry.WithLogTries(true), retry.WithLogger(logger), retry.WithName("fetch"))
	// Output:
	// {"level":"WARN","msg":"An error happened while we retry to run fetch at the 1 attempt.","log_type":"warning","controller":"retry.Do","subject":"Warning at retrying fetch","payload":{"type":"*errors.errorString","message":"connection refused","traceback":["*errors.errorString: connection refused"],"attempt":1,"max_attempts":2,"delay":0.001}}
	// {"level":"ERROR","msg":"We could not finish the current job in the function fetch.","log_type":"error","controller":"retry.Do","subject":"Error at fetch","payload":{"type":"*errors.errorString","message":"connection refused","traceback":["*errors.errorString: connection refused"],"attempt":2,"max_attempts":2,"delay":0}}
}

type stdout struct{}

func (stdout) Write(p []byte) (int, error) { return fmt.Print(string(p)) }

func ExampleNewTransport() {
	// A server that is unavailable twice, then answers.
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	client := &http.Client{Transport: retry.NewTransport(nil, retry.WithSleepTime(time.Millisecond))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), hits)
	// Output: 200 hello 3
}

func ExampleNewClient() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable) // always down
	}))
	defer srv.Close()

	client := retry.NewClient(retry.WithSleepTime(time.Millisecond), quiet)
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	// Retries ran out on a retryable status: the last response, no error.
	fmt.Println(resp.StatusCode)
	// Output: 503
}

func ExampleWithBudget() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable) // down
	}))
	defer srv.Close()

	// About one retry per 10s window: MinPerSecond × Window = 1, and the
	// ratio adds almost nothing for three requests.
	budget := &retry.Budget{MinPerSecond: 0.1, Ratio: 0.01}
	client := &http.Client{Transport: retry.NewTransport(nil,
		retry.WithBudget(budget), retry.WithSleepTime(time.Millisecond), quiet)}

	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	fmt.Println("3 requests, server hits:", hits.Load(), "(9 without a budget)")
	// Output: 3 requests, server hits: 4 (9 without a budget)
}

func ExampleWithRequestOptions() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable) // down
	}))
	defer srv.Close()
	client := retry.NewClient(retry.WithSleepTime(time.Millisecond), quiet) // 3 attempts

	// This one request may be tried only once; the client's other
	// requests keep their 3 attempts.
	ctx := retry.WithRequestOptions(context.Background(), retry.WithMaxAttempts(1))
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", hits.Load(), "hit")
	// Output: 503 after 1 hit
}

func ExampleWithPrepareRetry() {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		fmt.Println("attempt", hits, "signed", r.Header.Get("X-Signature"))
		if hits == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	// sign stands for a request signer with a timestamp (AWS SigV4, HMAC):
	// each retry is signed anew on its own copy of the request.
	signed := 0
	sign := func(r *http.Request) error {
		signed++
		r.Header.Set("X-Signature", fmt.Sprintf("v%d", signed))
		return nil
	}
	client := retry.NewClient(retry.WithSleepTime(time.Millisecond), retry.WithPrepareRetry(sign))
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-Signature", "v0") // the caller signs the first attempt
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "caller's request still", req.Header.Get("X-Signature"))
	// Output:
	// attempt 1 signed v0
	// attempt 2 signed v1
	// 200 caller's request still v0
}

func ExampleRetryAfter() {
	start := time.Now()
	calls := 0
	v, err := retry.Do(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		if calls == 1 {
			// The service said when to come back: wait at least 50ms,
			// though the schedule would wait only 1ms.
			return "", retry.RetryAfter(50*time.Millisecond, errors.New("rate limited"))
		}
		return "done", nil
	}, retry.WithSleepTime(time.Millisecond))
	fmt.Println(v, err, time.Since(start) >= 50*time.Millisecond)
	// Output: done <nil> true
}

func ExampleTransport_zero() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()

	// The zero Transport is NewTransport(nil): the default policy.
	client := &http.Client{Transport: &retry.Transport{}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 ok
}

func ExampleNewMetrics() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway) // always failing
	}))
	defer srv.Close()

	reg := prometheus.NewRegistry() // or nil for prometheus.DefaultRegisterer
	m, err := retry.NewMetrics(reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	client := retry.NewClient(retry.WithMetrics(m), retry.WithName("inventory"),
		retry.WithSleepTime(time.Millisecond), quiet)
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	families, _ := reg.Gather()
	for _, f := range families {
		for _, s := range f.GetMetric() {
			if c := s.GetCounter(); c != nil {
				var labels []string
				for _, l := range s.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				sort.Strings(labels)
				fmt.Println(f.GetName(), strings.Join(labels, " "), c.GetValue())
			}
		}
	}
	// Output:
	// retry_http_attempts_total category=server_error client=inventory method=GET 3
	// retry_http_requests_total client=inventory method=GET outcome=exhausted 1
	// retry_http_retries_total category=server_error client=inventory method=GET 2
}

func ExampleCheckOptions() {
	// Options read from configuration: check them before NewTransport,
	// which panics on an invalid one.
	attempts, sleep := 0, -time.Second
	err := retry.CheckOptions(retry.WithMaxAttempts(attempts), retry.WithSleepTime(sleep))
	fmt.Println(errors.Is(err, retry.ErrInvalidOption))
	fmt.Println(err)
	// Output:
	// true
	// retry: invalid option: WithMaxAttempts(0): must be at least 1
}

func ExampleClassifier() {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits == 1 {
			// This API answers 409 while a resource is still being created.
			w.WriteHeader(http.StatusConflict)
			return
		}
		fmt.Fprint(w, "created")
	}))
	defer srv.Close()

	// Retry 409 as a server error; leave everything else to Classify.
	classify := func(resp *http.Response, err error) retry.Category {
		if resp != nil && resp.StatusCode == http.StatusConflict {
			return retry.ServerError
		}
		return retry.Classify(resp, err)
	}
	client := retry.NewClient(retry.WithClassifier(classify), retry.WithSleepTime(time.Millisecond))
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", hits, "attempts")
	// Output: 200 created after 2 attempts
}

func ExampleWithOnAttempt() {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	// A request log: one line per attempt, the last (successful) one too.
	logAttempt := func(ev retry.Event) {
		fmt.Println(ev.Kind, ev.Attempt, ev.Method, ev.Response.StatusCode, ev.Category)
	}
	client := retry.NewClient(retry.WithOnAttempt(logAttempt), retry.WithSleepTime(time.Millisecond))
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	// Output:
	// attempt 1 GET 503 server_error
	// attempt 2 GET 200 success
}

// A request whose first attempt is stuck gets a hedge after 20ms, and the
// hedge's answer; the stuck attempt is cancelled.
func ExampleWithHedge() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			<-r.Context().Done() // the first attempt hangs until cancelled
			return
		}
		fmt.Fprint(w, "fast")
	}))
	defer srv.Close()

	client := &http.Client{Transport: retry.NewTransport(nil, quiet,
		retry.WithHedge(&retry.Hedge{Delay: 20 * time.Millisecond}))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body), "after", hits.Load(), "attempts")
	// Output: 200 OK fast after 2 attempts
}

// A download cut in the middle carries on where it stopped: the caller reads
// one whole body.
func ExampleWithResumeBody() {
	data := bytes.Repeat([]byte("0123456789"), 10_000) // 100,000 bytes
	res := httptest_helpers.NewResource(data).CutAfter(30_000)
	srv := httptest_helpers.Start(res)
	defer srv.Close()

	client := &http.Client{Transport: retry.NewTransport(nil, quiet, retry.WithSleepTime(time.Millisecond),
		retry.WithResumeBody(3))}
	resp, err := client.Get(srv.URL + "/file")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(len(body), bytes.Equal(body, data), err)
	for _, r := range res.Requests() {
		fmt.Printf("%d %q\n", r.Status, r.Range)
	}
	// Output:
	// 100000 true <nil>
	// 200 ""
	// 206 "bytes=30000-"
}
