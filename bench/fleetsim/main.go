// Command fleetsim simulates a fleet of clients, each with its own retrying
// Transport, against one loopback server of fixed capacity that goes down
// for a while and comes back. For each jitter and budget setting it reports
// the load amplification during the outage, the peak load when the server
// comes back, and how long until 99% of new requests succeed again, and it
// plots the load the server received over time.
//
//	go run ./fleetsim -out .    # from bench/; writes fleet-K50.png, fleet-K500.png
package main

import (
	"context"
	"flag"
	"fmt"
	"image/color"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/redis/go-redis/v9"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/redisbudget"
	"github.com/retrykit/retry/redisbudget/redistest"
)

const bucket = 100 * time.Millisecond

// sim is one run's settings.
type sim struct {
	clients  int
	wanted   float64       // requests per second the whole fleet wants
	capacity float64       // requests per second the server can serve
	warmup   time.Duration // healthy, before the outage
	outage   time.Duration
	recovery time.Duration
	jitter   retry.Jitter
	budget   string // "off", "default", "v1", "tuned" or "redis"
	failure  string // how the dead server fails: "503", "503+RA" (with Retry-After: 1) or "reset"
	cooldown bool   // retry.WithHostCooldown
}

func (s sim) label() string {
	l := fmt.Sprintf("%s jitter, budget %s", s.jitter, s.budget)
	if s.failure != "503" {
		l += ", " + s.failure
	}
	if !s.cooldown {
		l += ", no cooldown"
	}
	return l
}

// result is what one run measured.
type result struct {
	sim
	amplification float64 // received ÷ wanted during the outage
	peak          float64 // highest received rate after recovery, req/s
	after         float64 // mean received rate over the first second after recovery, req/s
	recover99     time.Duration
	recovered     bool
	redisOps      float64   // round trips to Redis per client per second (budget "redis")
	attempts      float64   // attempts the Transports made during the outage ÷ wanted
	received      []float64 // received per bucket, req/s
}

// server is the loopback server: down during the outage, otherwise it
// serves up to capacity requests per second and sheds the rest with 503.
type server struct {
	start    time.Time
	sim      sim
	mu       sync.Mutex
	tokens   float64
	last     time.Time
	received []atomic.Int64
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	el := now.Sub(s.start)
	if b := int(el / bucket); b >= 0 && b < len(s.received) {
		s.received[b].Add(1)
	}
	if el >= s.sim.warmup && el < s.sim.warmup+s.sim.outage {
		switch s.sim.failure {
		case "reset":
			reset(w)
		case "503+RA":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	}
	s.mu.Lock()
	s.tokens = min(s.sim.capacity/10, s.tokens+now.Sub(s.last).Seconds()*s.sim.capacity)
	s.last = now
	ok := s.tokens >= 1
	if ok {
		s.tokens--
	}
	s.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// reset closes the connection at once with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// redisAddr is the Redis that budget "redis" shares through; runs counts
// the runs, for a fresh Prefix each.
var (
	redisAddr string
	runs      int
)

func run(s sim) result {
	runs++
	total := s.warmup + s.outage + s.recovery
	nb := int(total / bucket)
	srv := &server{sim: s, received: make([]atomic.Int64, nb+100)}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	quiet := retry.WithLogger(slog.New(slog.DiscardHandler))
	transports := make([]*retry.Transport, s.clients)
	var budgets []*redisbudget.Budget
	var clients []*redis.Client
	// Attempts the Transports made during the outage: the server's hits
	// may be more, when net/http replays a request on a reused connection
	// that was reset.
	var start atomic.Pointer[time.Time]
	var attempts atomic.Int64
	count := retry.WithOnAttempt(func(retry.Event) {
		if st := start.Load(); st != nil {
			if el := time.Since(*st); el >= s.warmup && el < s.warmup+s.outage {
				attempts.Add(1)
			}
		}
	})
	for i := range transports {
		opts := []retry.Option{retry.WithMaxAttempts(4), retry.WithSleepTime(100 * time.Millisecond),
			retry.WithMaxDelay(2 * time.Second), retry.WithJitter(s.jitter), retry.WithHostCooldown(s.cooldown), quiet, count}
		switch s.budget {
		case "off":
			opts = append(opts, retry.WithBudget(nil))
		case "v1": // the defaults before per-host budgets, for comparison
			opts = append(opts, retry.WithBudget(&retry.Budget{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}))
		case "tuned":
			opts = append(opts, retry.WithBudget(&retry.Budget{MinPerSecond: 0.1}))
		case "redis": // each client a process with its own connection to Redis
			c := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 2, ContextTimeoutEnabled: true})
			b := redisbudget.New(c, redisbudget.Options{Prefix: fmt.Sprintf("fleetsim%d", runs), Logger: slog.New(slog.DiscardHandler)})
			clients, budgets = append(clients, c), append(budgets, b)
			opts = append(opts, retry.WithBudget(b))
		}
		base := cleanhttp.DefaultPooledTransport()
		base.MaxIdleConnsPerHost = 4
		transports[i] = retry.NewTransport(base, opts...)
	}
	defer func() {
		for _, t := range transports {
			t.CloseIdleConnections()
		}
		for i := range budgets {
			_ = budgets[i].Close()
			_ = clients[i].Close()
		}
	}()
	if len(budgets) > 0 {
		// Processes of a running fleet have talked to the host before:
		// one request each, then a sync.
		for _, tr := range transports {
			if resp, err := tr.RoundTrip(mustGet(hs.URL)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	var syncsBefore uint64
	for _, b := range budgets {
		syncsBefore += b.Stats().Syncs
	}

	// Open-loop arrivals at the wanted rate, each to a random client; the
	// outcome of each request is kept by the bucket it started in.
	wanted := make([]atomic.Int64, nb)
	succeeded := make([]atomic.Int64, nb)
	var wg sync.WaitGroup
	srv.start = time.Now()
	srv.last = srv.start
	start.Store(&srv.start)
	interval := time.Duration(float64(time.Second) / s.wanted)
	tick := time.NewTicker(interval)
	for now := range tick.C {
		b := int(now.Sub(srv.start) / bucket)
		if b >= nb {
			break
		}
		wanted[b].Add(1)
		tr := transports[rand.IntN(len(transports))]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				succeeded[b].Add(1)
			}
		})
	}
	tick.Stop()
	wg.Wait()

	r := result{sim: s, received: make([]float64, nb)}
	from, to := int(s.warmup/bucket), int((s.warmup+s.outage)/bucket)
	var got, want float64
	for b := range nb {
		r.received[b] = float64(srv.received[b].Load()) * float64(time.Second/bucket)
		if b >= from && b < to {
			got += float64(srv.received[b].Load())
			want += float64(wanted[b].Load())
		}
		if b >= to {
			r.peak = max(r.peak, r.received[b])
		}
		if b >= to && b < to+int(time.Second/bucket) {
			r.after += r.received[b] / float64(time.Second/bucket)
		}
	}
	r.amplification = got / want
	r.attempts = float64(attempts.Load()) / want
	if len(budgets) > 0 {
		var syncs uint64
		for _, b := range budgets {
			syncs += b.Stats().Syncs
		}
		r.redisOps = float64(syncs-syncsBefore) / float64(len(budgets)) / time.Since(srv.start).Seconds()
	}
	// The first bucket from which every later one has ≥ 99% successes.
	r.recovered = false
	for b := nb - 1; b >= to; b-- {
		w := wanted[b].Load()
		if w > 0 && float64(succeeded[b].Load()) < 0.99*float64(w) {
			break
		}
		r.recover99 = time.Duration(b-to) * bucket
		r.recovered = true
	}
	return r
}

func main() {
	out := flag.String("out", ".", "folder for the PNG plots")
	outage := flag.Duration("outage", 2*time.Second, "how long the server is down")
	capacity := flag.Float64("capacity", 1200, "requests per second the server serves (the fleet wants 1000)")
	shared := flag.Bool("shared", false, "only the runs with a budget shared on Redis (starts a redis-server of its own), against the local default")
	flag.Parse()
	fleets := []int{50, 500}

	base := sim{wanted: 1000, capacity: *capacity, warmup: 500 * time.Millisecond, outage: *outage,
		recovery: 3 * time.Second, failure: "503", cooldown: true}
	if *shared {
		if err := runShared(base, fleets, *out); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
		return
	}

	fmt.Println("Dead server answers 503 (no Retry-After):")
	fmt.Println()
	header()
	for _, k := range fleets {
		var results []result
		for _, j := range []retry.Jitter{retry.NoJitter, retry.FullJitter, retry.DecorrelatedJitter} {
			for _, b := range []string{"off", "v1", "default", "tuned"} {
				s := base
				s.clients, s.jitter, s.budget = k, j, b
				results = append(results, row(s))
			}
		}
		if err := plotLoad(results, filepath.Join(*out, fmt.Sprintf("fleet-K%d.png", k))); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
	}

	fmt.Println()
	fmt.Println("Other ways of being down (no jitter): 503 with Retry-After: 1, with and without the host cooldown; connection resets:")
	fmt.Println()
	header()
	for _, k := range fleets {
		var results []result
		for _, f := range []struct {
			failure  string
			cooldown bool
		}{{"503+RA", true}, {"503+RA", false}, {"reset", true}} {
			for _, b := range []string{"off", "v1", "default"} {
				s := base
				s.clients, s.jitter, s.budget, s.failure, s.cooldown = k, retry.NoJitter, b, f.failure, f.cooldown
				results = append(results, row(s))
			}
		}
		if err := plotLoad(results, filepath.Join(*out, fmt.Sprintf("fleet-K%d-failures.png", k))); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
	}
}

// mustGet returns a GET request for url, with a 5s deadline of its own.
func mustGet(url string) *http.Request {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		panic(err)
	}
	context.AfterFunc(ctx, cancel)
	return req
}

func header() {
	fmt.Println("| clients | dead server | jitter | budget | cooldown | amplification during outage | peak load after (req/s) | mean load 1st second after (req/s) | time to 99% success |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
}

// row runs s and prints its line of the table.
func row(s sim) result {
	r := run(s)
	rec := "not within 3s"
	if r.recovered {
		rec = r.recover99.String()
	}
	cd := "on"
	if !s.cooldown {
		cd = "off"
	}
	fmt.Printf("| %d | %s | %s | %s | %s | %.2f | %.0f | %.0f | %s |\n", s.clients, s.failure, s.jitter, s.budget, cd, r.amplification, r.peak, r.after, rec)
	return r
}

// runShared compares the budget shared on Redis with the local default, for
// each way of being down.
func runShared(base sim, fleets []int, out string) error {
	rs, err := redistest.Launch()
	if err != nil {
		return err
	}
	defer rs.Close()
	redisAddr = rs.Addr()
	fmt.Println("| clients | dead server | budget | amplification during outage | the Transports' attempts ÷ wanted | peak load after (req/s) | mean load 1st second after (req/s) | time to 99% success | Redis round trips per client per second |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, k := range fleets {
		var results []result
		for _, f := range []string{"503", "503+RA", "reset"} {
			for _, b := range []string{"default", "redis"} {
				s := base
				s.clients, s.jitter, s.budget, s.failure = k, retry.NoJitter, b, f
				r := run(s)
				rec, ops := "not within 3s", "–"
				if r.recovered {
					rec = r.recover99.String()
				}
				if b == "redis" {
					ops = fmt.Sprintf("%.1f", r.redisOps)
				}
				fmt.Printf("| %d | %s | %s | %.2f | %.2f | %.0f | %.0f | %s | %s |\n", k, f, b, r.amplification, r.attempts, r.peak, r.after, rec, ops)
				results = append(results, r)
			}
		}
		if err := plotLoad(results, filepath.Join(out, fmt.Sprintf("fleet-K%d-redis.png", k))); err != nil {
			return err
		}
	}
	return nil
}

// plotLoad draws the load each run put on the server over time.
func plotLoad(results []result, path string) error {
	p := plot.New()
	s := results[0].sim
	p.Title.Text = fmt.Sprintf("%d clients, 1000 req/s wanted, capacity %.0f req/s, down %.1fs–%.1fs",
		s.clients, s.capacity, s.warmup.Seconds(), (s.warmup + s.outage).Seconds())
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "requests received per second"
	p.Legend.Top = true
	palette := []color.RGBA{{228, 26, 28, 255}, {55, 126, 184, 255}, {77, 175, 74, 255}, {152, 78, 163, 255},
		{255, 127, 0, 255}, {166, 86, 40, 255}, {247, 129, 191, 255}, {153, 153, 153, 255}, {0, 0, 0, 255}}
	for i, r := range results {
		pts := make(plotter.XYs, len(r.received))
		for b, v := range r.received {
			pts[b].X = (time.Duration(b) * bucket).Seconds()
			pts[b].Y = v
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.2)
		if r.budget == "off" {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(line)
		p.Legend.Add(r.label(), line)
	}
	return p.Save(10*vg.Inch, 6*vg.Inch, path)
}
