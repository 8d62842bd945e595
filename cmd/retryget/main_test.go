package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDemo(t *testing.T) {
	old := demoRetryAfter
	demoRetryAfter = "0" // the real demo waits 1s here
	defer func() { demoRetryAfter = old }()
	code, stdout, stderr := runCmd(t)
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "hello from the flaky server")
	assert.Contains(t, stderr, "no URL given")
	for _, cat := range []string{`"category":"connection_error"`, `"category":"server_error"`, `"category":"throttled"`} {
		assert.Contains(t, stderr, cat)
	}
	assert.Equal(t, 3, strings.Count(stderr, `"level":"WARN"`), "one footprint per retry")
}

func TestFetchRetriesAndSucceeds(t *testing.T) {
	srv := h.NewServer(t, h.Status(503), h.Status(200).Body("payload"))
	code, stdout, stderr := runCmd(t, "-sleep", "1ms", srv.URL)
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "payload", stdout)
	assert.Equal(t, 2, srv.Hits())
	assert.NotContains(t, stderr, `"level":"WARN"`, "no footprint per retry without -log-tries")
}

func TestOutputFileAndHeadersAndData(t *testing.T) {
	srv := h.NewServer(t, h.Status(201).Body("created"))
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	require.NoError(t, os.WriteFile(in, []byte(`{"a":1}`), 0o600))
	out := filepath.Join(dir, "out.txt")
	code, stdout, stderr := runCmd(t, "-d", "@"+in, "-H", "Content-Type: application/json", "-H", "X-A: 1", "-o", out, srv.URL)
	assert.Equal(t, 0, code, stderr)
	assert.Empty(t, stdout)
	got, _ := os.ReadFile(out)
	assert.Equal(t, "created", string(got))
	r := srv.Requests()[0]
	assert.Equal(t, "POST", r.Method, "-d implies POST")
	assert.Equal(t, `{"a":1}`, string(r.Body))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "1", r.Header.Get("X-A"))

	code, _, _ = runCmd(t, "-X", "PUT", "-d", "inline", srv.URL)
	assert.Equal(t, 0, code)
	assert.Equal(t, "PUT", srv.Requests()[1].Method)
	assert.Equal(t, "inline", string(srv.Requests()[1].Body))
}

func TestFinalFailures(t *testing.T) {
	srv := h.NewServer(t, h.Status(404).Body("nope"))
	code, stdout, stderr := runCmd(t, srv.URL)
	assert.Equal(t, 1, code)
	assert.Equal(t, "nope", stdout)
	assert.Contains(t, stderr, "retryget: the server answered 404 Not Found")

	down := h.NewServer(t, h.Status(503))
	code, _, stderr = runCmd(t, "-sleep", "1ms", down.URL)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "503 Service Unavailable")
	assert.Contains(t, stderr, `"level":"ERROR"`, "the give-up footprint")

	addr := closedAddr(t)
	code, _, stderr = runCmd(t, "-sleep", "1ms", "-attempts", "2", "http://"+addr+"/")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "retryget: Get")
	assert.Contains(t, stderr, "giving up after 2 attempts")
	assert.Contains(t, stderr, "connection refused")
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-jitter", "sometimes", "http://127.0.0.1:1/"}, `-jitter "sometimes"`},
		{[]string{"-timeout", "-1s", "http://127.0.0.1:1/"}, "-timeout -1s: must not be negative"},
		{[]string{"-sleep", "-5ms", "http://127.0.0.1:1/"}, "-sleep -5ms: must not be negative"},
		{[]string{"-attempts", "0", "http://127.0.0.1:1/"}, "-attempts(0): must be at least 1"},
		{[]string{"-backoff", "0.5", "http://127.0.0.1:1/"}, "-backoff(0.5)"},
		{[]string{"://nope"}, "not an http(s) URL"},
		{[]string{"ftp://host/file"}, "not an http(s) URL"},
		{[]string{"-d", "@/does/not/exist", "http://127.0.0.1:1/"}, "-d @/does/not/exist: no such file or directory"},
		{[]string{"-H", "NoColon", "http://127.0.0.1:1/"}, `-H "NoColon"`},
		{[]string{"-X", "BAD METHOD", "http://127.0.0.1:1/"}, "invalid method"},
		{[]string{"http://a/", "http://b/"}, "one URL at most"},
		{[]string{"-no-such-flag"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, tt.args...)
		assert.Equal(t, 2, code, "%v: %s", tt.args, stderr)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, tt.want, tt.args)
		assert.Contains(t, stderr, "usage: retryget", tt.args)
		assert.NotContains(t, stderr, "goroutine ", "never a stack trace")
	}
}

func TestSecretsStayOutOfMessages(t *testing.T) {
	code, _, stderr := runCmd(t, "http://user:hunter2@[::1")
	assert.Equal(t, 2, code)
	assert.NotContains(t, stderr, "hunter2")

	addr := closedAddr(t)
	code, _, stderr = runCmd(t, "-sleep", "1ms", "-attempts", "1", "http://user:hunter2@"+addr+"/p?token=s3cret")
	assert.Equal(t, 1, code)
	assert.NotContains(t, stderr, "hunter2")
	assert.NotContains(t, stderr, "s3cret")
	assert.Contains(t, stderr, "token=REDACTED")
}

func TestMetricsFlags(t *testing.T) {
	srv := h.NewServer(t, h.Status(503), h.Status(200))
	code, _, stderr := runCmd(t, "-sleep", "1ms", "-metrics", srv.URL)
	assert.Equal(t, 0, code)
	assert.Contains(t, stderr, `retry_http_attempts_total{category="server_error",client="default",method="GET"} 1`)
	assert.Contains(t, stderr, `retry_http_requests_total{client="default",method="GET",outcome="ok"} 1`)

	// -metrics-addr: the server scrapes the command's /metrics while the
	// command waits for its answer.
	addr := closedAddr(t)
	var mu sync.Mutex
	var scraped string
	scraper := h.NewServer(t, h.Status(503), h.Func(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			scraped = string(b)
			mu.Unlock()
		}
		w.WriteHeader(200)
	}))
	code, _, stderr = runCmd(t, "-sleep", "1ms", "-metrics-addr", addr, scraper.URL)
	assert.Equal(t, 0, code, stderr)
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, scraped, `retry_http_retries_total{category="server_error",client="default",method="GET"} 1`)
}

// closedAddr returns a loopback address where nothing listens (yet).
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// -resume: a download cut twice arrives whole in the -o file; without it,
// retryget fails on the broken body.
func TestResumeFlag(t *testing.T) {
	data := bytes.Repeat([]byte("retryget resumes "), 20_000)
	res := h.NewResource(data).CutAfter(50_000, 100_000)
	srv := h.NewServer(t, res)
	out := filepath.Join(t.TempDir(), "file")
	code, _, stderr := runCmd(t, "-resume", "5", "-sleep", "1ms", "-o", out, srv.URL+"/file")
	require.Equal(t, 0, code, stderr)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Len(t, res.Requests(), 3)

	res2 := h.NewResource(data).CutAfter(50_000)
	srv2 := h.NewServer(t, res2)
	code, _, stderr = runCmd(t, "-o", out, srv2.URL+"/file")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "reading the body")

	code, _, stderr = runCmd(t, "-resume", "-2", srv2.URL)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-resume(-2): must not be negative")
}
