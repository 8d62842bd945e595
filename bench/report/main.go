// Command report turns `go test -bench` output (several -count runs) into
// the Markdown tables of RESULTS.md: the median of each measure per
// benchmark and peer, what each peer adds over the bare transport, and how
// retry's addition compares with each peer's.
//
//	go run ./report < raw.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// key is a benchmark without its peer: "Overhead/case=GET".
type key = string

var line = regexp.MustCompile(`^Benchmark(\S+?)/(?:(case=\S+)/)?peer=(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func main() {
	// values[bench][peer][unit] = samples
	values := map[key]map[string]map[string][]float64{}
	var benches []key
	peers := []string{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		bench := m[1]
		if m[2] != "" {
			bench += "/" + m[2]
		}
		peer := m[3]
		if values[bench] == nil {
			values[bench] = map[string]map[string][]float64{}
			benches = append(benches, bench)
		}
		if values[bench][peer] == nil {
			values[bench][peer] = map[string][]float64{}
		}
		if !slices.Contains(peers, peer) {
			peers = append(peers, peer)
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				values[bench][peer][f[i+1]] = append(values[bench][peer][f[i+1]], v)
			}
		}
	}
	byFamily := map[string][]key{}
	var families []string
	for _, b := range benches {
		fam, _, _ := strings.Cut(b, "/")
		if byFamily[fam] == nil {
			families = append(families, fam)
		}
		byFamily[fam] = append(byFamily[fam], b)
	}
	for _, fam := range families {
		units := unitsOf(values, byFamily[fam])
		fmt.Printf("### %s\n\n", fam)
		// The medians.
		fmt.Printf("| benchmark | peer | %s |\n|---|---|%s\n", strings.Join(units, " | "), strings.Repeat("---|", len(units)))
		for _, b := range byFamily[fam] {
			for _, p := range peers {
				if values[b][p] == nil {
					continue
				}
				row := []string{}
				for _, u := range units {
					row = append(row, format(median(values[b][p][u])))
				}
				fmt.Printf("| %s | %s | %s |\n", b, p, strings.Join(row, " | "))
			}
		}
		fmt.Println()
		if fam != "Overhead" && fam != "Loopback" {
			continue
		}
		// Over bare, and retry's addition against each peer's.
		if fam == "Overhead" {
			fmt.Printf("Added over bare (and, in brackets, retry's addition ÷ that peer's addition; below 1 means retry adds less):\n\n")
		} else {
			fmt.Printf("Added over bare (differences of a few per cent are within this benchmark's noise; see benchstat's ± below):\n\n")
		}
		fmt.Printf("| benchmark | peer | ns/op added | ratio to bare | allocs added | B added |\n|---|---|---|---|---|---|\n")
		for _, b := range byFamily[fam] {
			bare := values[b]["bare"]
			ours := values[b]["retry"]
			if bare == nil || ours == nil {
				continue
			}
			for _, p := range peers {
				if p == "bare" || values[b][p] == nil {
					continue
				}
				v := values[b][p]
				dns := median(v["ns/op"]) - median(bare["ns/op"])
				cmp := ""
				// Only on the in-memory base is the difference to bare
				// larger than the noise; only the peers are compared.
				if fam == "Overhead" && p != "retry" && !strings.HasPrefix(p, "retry-") {
					cmp = fmt.Sprintf(" (%.2f)", (median(ours["ns/op"])-median(bare["ns/op"]))/dns)
				}
				fmt.Printf("| %s | %s | %s%s | %.3f | %s | %s |\n", b, p, format(dns), cmp,
					median(v["ns/op"])/median(bare["ns/op"]),
					format(median(v["allocs/op"])-median(bare["allocs/op"])),
					format(median(v["B/op"])-median(bare["B/op"])))
			}
		}
		fmt.Println()
	}
}

func unitsOf(values map[key]map[string]map[string][]float64, benches []key) []string {
	seen := map[string]bool{}
	var units []string
	for _, b := range benches {
		for _, byUnit := range values[b] {
			for u := range byUnit {
				if !seen[u] {
					seen[u] = true
					units = append(units, u)
				}
			}
		}
	}
	slices.Sort(units)
	return units
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e6 && v > -1e6:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
