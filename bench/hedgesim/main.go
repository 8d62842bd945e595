// Command hedgesim measures hedged requests: how much each hedging peer
// cuts the tail latency of a loopback server whose attempts are now and then
// slow, and how much extra load it sends for that.
//
// The server answers 98% of attempts after 1–3 ms (uniform) and 2% after
// 250 ms. In the "independent" scenario each attempt draws its latency, so a
// hedge of a slow attempt is likely fast; in the "per-request" scenario the
// latency follows from the request's id, the same on every attempt, so
// hedging cannot help and only adds load. Closed-loop workers (concurrency
// 16 by default) send GETs and 4 KiB PUTs (with GetBody), and GETs of a
// 512 KiB body to catch truncated winners; the server checks every PUT body
// and the client every response body.
//
// For each scenario, workload and peer it reports the latency percentiles
// (client side, from RoundTrip to the end of the body), the server's hits
// per request, the allocations per request (the whole process: client and
// server), the bad or cut-off bodies and the attempts that failed: the
// median over -runs repetitions, with the spread (min–max), or the sum for
// the counts that should be 0. It ends with the targets for retry's
// hedging, met or not. The peers run one after the other within each
// repetition, in an order rotated from one repetition to the next.
//
//	go run ./hedgesim            # from bench/; about 12 minutes on 2 cores
//	go run ./hedgesim -n 10000   # half the requests, half the time
//	go run ./hedgesim -quick     # a smoke run of 20 seconds
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// workload is one kind of request the workers send.
type workload struct {
	name     string
	method   string
	path     string
	reqBody  int  // bytes of the request body (PUT), 0 for none
	respBody int  // bytes of the response body
	bigOnly  bool // only in the independent scenario, with -n-big requests
}

// workloads are measured in this order; GET512KiB only in the independent
// scenario, where hedges win and a winner's body could be cut short.
var workloads = []workload{
	{name: "GET", method: http.MethodGet, path: "/", respBody: smallBody},
	{name: "PUT4KiB", method: http.MethodPut, path: "/", reqBody: smallBody, respBody: smallBody},
	{name: "GET512KiB", method: http.MethodGet, path: bigPath, respBody: bigBody, bigOnly: true},
}

// measurement is what one peer measured on one workload in one repetition.
type measurement struct {
	p50, p90, p99, p999, max time.Duration
	hitsPerRequest           float64 // attempts the server saw ÷ requests
	allocsPerRequest         float64 // heap allocations of the whole process ÷ requests
	badServer                int64   // PUT bodies the server received whole but short or wrong
	cutServer                int64   // PUT bodies the server could not read to their end
	badClient                int64   // response bodies the client found short or wrong
	errors                   int64   // requests that failed, or answered other than 200
	failedAttempts           int64   // attempts that failed, not by their own cancellation
	elapsed                  time.Duration
}

// config is the run's settings, from the flags.
type config struct {
	n, nPerRequest, nBig int
	concurrency          int
	runs                 int
	seed                 uint64
}

func main() {
	var c config
	// The count: 20,000 (a bare request takes 7 ms on average, and
	// 16 are in flight: bare alone needs 8.8 s per measurement).
	flag.IntVar(&c.n, "n", 20000, "requests per measurement (GET and PUT4KiB, independent scenario)")
	flag.IntVar(&c.nPerRequest, "n-per-request", 0, "requests per measurement in the per-request scenario; 0 means n/4")
	flag.IntVar(&c.nBig, "n-big", 0, "requests per measurement of GET512KiB; 0 means n/10")
	flag.IntVar(&c.concurrency, "concurrency", 16, "requests in flight at once (closed-loop workers)")
	flag.IntVar(&c.runs, "runs", 5, "repetitions of every measurement")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the latency draws (repetition r uses seed+r)")
	quick := flag.Bool("quick", false, "a smoke run: n=2000, runs=1")
	only := flag.String("peers", "", "comma-separated peers to run (bare always runs, for the ratios); empty means all")
	flag.Parse()
	if *only != "" {
		names := strings.Split(*only, ",")
		peers = slices.DeleteFunc(peers, func(p peer) bool { return p.name != "bare" && !slices.Contains(names, p.name) })
	}
	if *quick {
		c.n, c.runs = 2000, 1
	}
	if c.nPerRequest == 0 {
		c.nPerRequest = c.n / 4
	}
	if c.nBig == 0 {
		c.nBig = c.n / 10
	}
	if c.n <= 0 || c.nPerRequest <= 0 || c.nBig <= 0 || c.concurrency <= 0 || c.runs <= 0 {
		fmt.Fprintln(os.Stderr, "hedgesim: -n, -n-per-request, -n-big, -concurrency and -runs must be positive")
		os.Exit(2)
	}

	servers := map[scenario]*server{}
	urls := map[scenario]string{}
	for _, sc := range []scenario{independent, perRequest} {
		s := newServer(sc)
		hs := httptest.NewServer(s) // 127.0.0.1
		defer hs.Close()
		servers[sc], urls[sc] = s, hs.URL
	}

	res := results{}
	began := time.Now()
	for r := range c.runs {
		order := slices.Concat(peers[r%len(peers):], peers[:r%len(peers)])
		for _, sc := range []scenario{independent, perRequest} {
			for _, w := range workloads {
				n := c.n
				switch {
				case w.bigOnly && sc != independent:
					continue
				case w.bigOnly:
					n = c.nBig
				case sc == perRequest:
					n = c.nPerRequest
				}
				for _, p := range order {
					m := measure(servers[sc], urls[sc]+w.path, p, w, n, c.concurrency, c.seed+uint64(r))
					res.add(cell{sc, w.name, p.name}, r, m)
					fmt.Fprintf(os.Stderr, "run %d/%d %s %s %s: %v, p99.9 %v, %.3f hits/request\n",
						r+1, c.runs, sc, w.name, p.name, m.elapsed.Round(time.Millisecond), m.p999.Round(10*time.Microsecond), m.hitsPerRequest)
				}
			}
		}
	}
	fmt.Fprintf(os.Stderr, "hedgesim: %v in all\n", time.Since(began).Round(time.Second))
	report(os.Stdout, res, c)
}

// measure runs n requests of workload w through a fresh instance of peer p,
// over a fresh base transport, against the server s at url, with
// concurrency workers, the server's draws seeded with seed.
func measure(s *server, url string, p peer, w workload, n, concurrency int, seed uint64) measurement {
	pooled := cleanhttp.DefaultPooledTransport()
	pooled.MaxIdleConnsPerHost = 2 * concurrency // room for the hedges' connections
	base := &counting{base: pooled}
	rt := p.new(base)
	defer pooled.CloseIdleConnections()
	s.reset(seed)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // against a hang
	defer cancel()
	lat := make([]time.Duration, n)
	var next, badClient, errs atomic.Int64
	var wg sync.WaitGroup
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			buf := make([]byte, bigChunk)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				var body io.Reader
				if w.reqBody > 0 {
					body = bytes.NewReader(pattern[:w.reqBody]) // NewRequest gives it a GetBody
				}
				req, err := http.NewRequestWithContext(ctx, w.method, url, body)
				if err != nil {
					panic(err)
				}
				req.Header.Set(requestIDKey, strconv.FormatInt(i, 10))
				t0 := time.Now()
				resp, err := rt.RoundTrip(req)
				if err != nil {
					lat[i] = time.Since(t0)
					errs.Add(1)
					continue
				}
				ok, _ := checkBody(resp.Body, pattern[:w.respBody], buf)
				_ = resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
				} else if !ok {
					badClient.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Losers may still be in the server; their hits and allocations count.
	if !s.idle(2 * time.Second) {
		fmt.Fprintf(os.Stderr, "hedgesim: %s: handlers still running 2s after the last request\n", p.name)
	}
	runtime.ReadMemStats(&after)

	slices.Sort(lat)
	return measurement{
		p50: quantile(lat, 0.50), p90: quantile(lat, 0.90), p99: quantile(lat, 0.99), p999: quantile(lat, 0.999),
		max:              lat[n-1],
		hitsPerRequest:   float64(s.hits.Load()) / float64(n),
		allocsPerRequest: float64(after.Mallocs-before.Mallocs) / float64(n),
		badServer:        s.bad.Load(),
		cutServer:        s.cut.Load(),
		badClient:        badClient.Load(),
		errors:           errs.Load(),
		failedAttempts:   base.failed.Load(),
		elapsed:          elapsed,
	}
}

// quantile is the q-quantile of sorted by the nearest-rank method.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(float64(len(sorted))*q)) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// counting is the base transport of every peer: it counts the attempts
// that fail for another reason than their own cancellation (a loser
// cancelled by its peer is not counted), which a hedging peer may hide
// behind another attempt's success.
type counting struct {
	base   http.RoundTripper
	failed atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err != nil && r.Context().Err() == nil {
		c.failed.Add(1)
	}
	return resp, err
}
