package retry_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/retrykit/retry"
	h "github.com/retrykit/retry/httptest_helpers"
)

// TestPrometheusEndToEnd scrapes this package's metrics with a real
// Prometheus server and reads them back through its query API. It runs when
// RETRY_PROMETHEUS_E2E=1 (.ci/run sets it after installing Debian's
// prometheus package) and is skipped otherwise.
func TestPrometheusEndToEnd(t *testing.T) {
	if os.Getenv("RETRY_PROMETHEUS_E2E") != "1" {
		t.Skip("set RETRY_PROMETHEUS_E2E=1 with a prometheus binary on PATH to run the end-to-end test against a real Prometheus")
	}
	bin, err := exec.LookPath("prometheus")
	require.NoError(t, err, "RETRY_PROMETHEUS_E2E=1 but no prometheus binary on PATH")

	// The metrics, served on loopback for Prometheus to scrape.
	reg := prometheus.NewRegistry()
	metrics, err := retry.NewMetrics(reg)
	require.NoError(t, err)
	exporter := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer exporter.Close()

	// Drive retries: 503, 503, 200 → two server_error attempts.
	flaky := h.NewServer(t, h.Status(503), h.Status(503), h.Status(200))
	client := retry.NewClient(retry.WithMetrics(metrics), retry.WithName("e2e"), retry.WithSleepTime(time.Millisecond))
	resp, err := client.Get(flaky.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	// A Prometheus that scrapes the exporter every 100ms.
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\nscrape_configs:\n  - job_name: retry\n    static_configs:\n      - targets: ['%s']\n",
		exporter.Listener.Addr())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	}()

	// Query it through this package's own transport: while Prometheus
	// starts, its connection refusals are retried.
	query := url.Values{"query": {`retry_http_attempts_total{client="e2e",method="GET",category="server_error"}`}}
	api := retry.NewClient(retry.WithMaxAttempts(10), retry.WithSleepTime(100*time.Millisecond), retry.WithMaxDelay(time.Second),
		retry.WithLogger(nil), retry.WithBudget(nil))
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		value, body, err := queryValue(api, "http://"+addr+"/api/v1/query?"+query.Encode())
		if err == nil && value == 2 {
			return // scraped and stored: the counter reads 2
		}
		last = fmt.Sprintf("value %v, err %v, body %s", value, err, body)
		time.Sleep(200 * time.Millisecond) // polling a scrape, not timing a behaviour
	}
	t.Fatalf("Prometheus never reported retry_http_attempts_total = 2: %s", last)
}

func queryValue(c *http.Client, u string) (float64, string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, string(body), err
	}
	if len(r.Data.Result) == 0 {
		return 0, string(body), fmt.Errorf("no result yet")
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, string(body), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
