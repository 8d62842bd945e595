package main

import (
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// cell names one line of the tables.
type cell struct {
	scenario scenario
	workload string
	peer     string
}

// results holds every measurement, by cell and then by repetition.
type results map[cell][]measurement

// add records m as repetition r of c.
func (res results) add(c cell, r int, m measurement) {
	ms := res[c]
	for len(ms) <= r {
		ms = append(ms, measurement{})
	}
	ms[r] = m
	res[c] = ms
}

// spread is the median of some values and their range.
type spread struct{ med, lo, hi float64 }

func summarize(v []float64) spread {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	return spread{med: (s[(n-1)/2] + s[n/2]) / 2, lo: s[0], hi: s[n-1]}
}

// format writes s as "median (min–max)", each value formatted by f, or
// the median alone after a single run.
func (s spread) format(f func(float64) string) string {
	if s.lo == s.hi {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.lo), f(s.hi))
}

// ms formats milliseconds with three significant digits or so.
func ms(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// fixed formats with that many decimals, and never as "-0".
func fixed(decimals int) func(float64) string {
	return func(v float64) string {
		scale := math.Pow(10, float64(decimals))
		if math.Round(v*scale) == 0 {
			v = 0
		}
		return fmt.Sprintf("%.*f", decimals, v)
	}
}

// over summarizes f over the repetitions of c.
func (res results) over(c cell, f func(m measurement) float64) spread {
	v := make([]float64, len(res[c]))
	for i, m := range res[c] {
		v[i] = f(m)
	}
	return summarize(v)
}

// versus summarizes f(c's measurement, other's measurement of the same
// repetition) over the repetitions: ratios and differences to a peer
// measured in the same run.
func (res results) versus(c, other cell, f func(m, o measurement) float64) spread {
	mine, theirs := res[c], res[other]
	v := make([]float64, len(mine))
	for i := range mine {
		v[i] = f(mine[i], theirs[i])
	}
	return summarize(v)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report writes the Markdown tables: one per scenario, then the issue's
// targets.
func report(w io.Writer, res results, c config) {
	fmt.Fprintf(w, "%d requests per measurement (per-request scenario: %d; GET512KiB: %d), concurrency %d, %d runs (seeds %d–%d); "+
		"median over the runs (min–max). Peers' modules: %s.\n\n",
		c.n, c.nPerRequest, c.nBig, c.concurrency, c.runs, c.seed, c.seed+uint64(c.runs)-1, versions())
	titles := map[scenario]string{
		independent: "Independent slowness: every attempt draws its latency (98% 1–3 ms, 2% 250 ms)",
		perRequest:  "Per-request slowness: every attempt of a slow request is slow (hedging cannot help)",
	}
	for _, sc := range []scenario{independent, perRequest} {
		fmt.Fprintf(w, "### %s\n\n", titles[sc])
		fmt.Fprintln(w, "| workload | peer | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99.9 ÷ bare's | hits/request | allocs/request | allocs over bare | bad bodies server/client | errors | failed attempts | request bodies cut off |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, wl := range workloads {
			for _, p := range peers {
				c := cell{sc, wl.name, p.name}
				if res[c] == nil {
					continue
				}
				bare := cell{sc, wl.name, "bare"}
				var badS, badC, errs, failed, cut int64
				for _, m := range res[c] {
					badS, badC, errs = badS+m.badServer, badC+m.badClient, errs+m.errors
					failed, cut = failed+m.failedAttempts, cut+m.cutServer
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d | %d | %d | %d |\n", wl.name, p.name,
					res.over(c, func(m measurement) float64 { return millis(m.p50) }).format(ms),
					res.over(c, func(m measurement) float64 { return millis(m.p90) }).format(ms),
					res.over(c, func(m measurement) float64 { return millis(m.p99) }).format(ms),
					res.over(c, func(m measurement) float64 { return millis(m.p999) }).format(ms),
					res.over(c, func(m measurement) float64 { return millis(m.max) }).format(ms),
					res.versus(c, bare, func(m, b measurement) float64 { return float64(m.p999) / float64(b.p999) }).format(fixed(3)),
					res.over(c, func(m measurement) float64 { return m.hitsPerRequest }).format(fixed(3)),
					res.over(c, func(m measurement) float64 { return m.allocsPerRequest }).format(fixed(0)),
					res.versus(c, bare, func(m, b measurement) float64 { return m.allocsPerRequest - b.allocsPerRequest }).format(fixed(0)),
					badS, badC, errs, failed, cut)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "p99.9 ÷ bare's and allocs over bare are taken within each run, then summarized. allocs/request counts every heap"+
		" allocation of the process during the measurement, the loopback server's included (which grow with the hits); allocs"+
		" over bare subtracts bare's. Bad bodies: PUT bodies the server received whole (to EOF) but short or wrong / response"+
		" bodies the client read short or wrong (a winner's context cancelled too soon, say), summed over the runs; errors: failed requests and"+
		" answers other than 200, summed; failed attempts: attempts"+
		" the base transport failed, not by their own cancellation, summed (a hedging peer may hide them behind another"+
		" attempt's success); request bodies cut off: PUT bodies the server could not read to their end because the"+
		" client gave up on the attempt mid-body (a loser cancelled while still sending), summed.")
	fmt.Fprintln(w)
	targets(w, res)
}

// targets writes the targets for retry's hedging, each with what
// was measured (medians) and whether it was met.
func targets(w io.Writer, res results) {
	fmt.Fprintln(w, "### Targets (medians)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | workload | target | measured | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	med := func(c cell, f func(m measurement) float64) float64 { return res.over(c, f).med }
	p999 := func(m measurement) float64 { return millis(m.p999) }
	hits := func(m measurement) float64 { return m.hitsPerRequest }
	row := func(sc scenario, wl, target, measured string, ok bool) {
		met := "no"
		if ok {
			met = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", sc, wl, target, measured, met)
	}
	// noWorse compares retry's a with the peer's b: met when a's median is
	// at most b's, or within the runs' spread of it (the two ranges
	// overlap: the runs cannot tell them apart).
	noWorse := func(sc scenario, wl, target string, a, b spread, format func(float64) string) {
		switch {
		case a.med <= b.med:
			row(sc, wl, target, fmt.Sprintf("%s vs %s", format(a.med), format(b.med)), true)
		case a.lo <= b.hi:
			fmt.Fprintf(w, "| %s | %s | %s | %s vs %s (ranges %s–%s and %s–%s overlap) | yes, within the runs' spread |\n",
				sc, wl, target, format(a.med), format(b.med), format(a.lo), format(a.hi), format(b.lo), format(b.hi))
		default:
			row(sc, wl, target, fmt.Sprintf("%s vs %s", format(a.med), format(b.med)), false)
		}
	}
	for _, sc := range []scenario{independent, perRequest} {
		for _, wl := range workloads {
			at := func(peer string) cell { return cell{sc, wl.name, peer} }
			if res[at("bare")] == nil {
				continue
			}
			for _, p := range []string{"retry", "retry-hedge-10ms", "retry-hedge-p95", "failsafehttp-hedge-10ms", "failsafehttp-hedge-p95"} {
				if res[at(p)] == nil {
					fmt.Fprintf(w, "\n(the targets need peer %s, which did not run)\n\n", p)
					return
				}
			}
			if sc == independent {
				for _, p := range []string{"retry-hedge-10ms", "retry-hedge-p95"} {
					r := res.versus(at(p), at("bare"), func(m, b measurement) float64 { return float64(m.p999) / float64(b.p999) }).med
					row(sc, wl.name, p+": p99.9 ≤ bare's ÷ 10", fmt.Sprintf("%.3f of bare's", r), r <= 0.1)
				}
				h := med(at("retry-hedge-p95"), hits)
				row(sc, wl.name, "retry-hedge-p95: hits/request ≤ 1.06", fmt.Sprintf("%.3f", h), h <= 1.06)
				for _, pair := range [][2]string{{"retry-hedge-10ms", "failsafehttp-hedge-10ms"}, {"retry-hedge-p95", "failsafehttp-hedge-p95"}} {
					noWorse(sc, wl.name, fmt.Sprintf("%s: p99.9 ≤ %s's", pair[0], pair[1]),
						res.over(at(pair[0]), p999), res.over(at(pair[1]), p999), func(v float64) string { return ms(v) + " ms" })
					noWorse(sc, wl.name, fmt.Sprintf("%s: hits/request ≤ %s's", pair[0], pair[1]),
						res.over(at(pair[0]), hits), res.over(at(pair[1]), hits), fixed(3))
				}
			} else {
				for _, p := range []string{"retry-hedge-10ms", "retry-hedge-p95"} {
					h := med(at(p), hits)
					row(sc, wl.name, p+": hits/request ≤ 1.06", fmt.Sprintf("%.3f", h), h <= 1.06)
				}
			}
			var bad int64
			for _, p := range []string{"retry", "retry-hedge-10ms", "retry-hedge-p95"} {
				for _, m := range res[at(p)] {
					bad += m.badServer + m.badClient + m.errors + m.failedAttempts
				}
			}
			row(sc, wl.name, "retry's peers: no bad body, no error, no failed attempt", fmt.Sprintf("%d", bad), bad == 0)
		}
	}
	fmt.Fprintln(w)
}

// versions names the peers' modules with the versions built in.
func versions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var v []string
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/failsafe-go/failsafe-go", "github.com/cristalhq/hedgedhttp":
			v = append(v, d.Path+" "+d.Version)
		}
	}
	return strings.Join(v, ", ")
}
