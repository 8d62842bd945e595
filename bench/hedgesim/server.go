package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes of the bodies, and the header that carries a request's id (the same
// on every attempt of one request).
const (
	smallBody    = 4 << 10   // PUT bodies, and the responses of GET and PUT
	bigBody      = 512 << 10 // the responses of the GET512KiB workload, on path bigPath
	bigPath      = "/big"
	bigChunk     = 64 << 10 // the big responses are written and flushed in chunks of this size
	requestIDKey = "X-Request-Id"
)

// pattern is the content of every body, request or response: a fixed
// pseudo-random sequence, so that a truncated, shifted or spliced body never
// passes for a whole one. A body of n bytes is pattern[:n].
var pattern = func() []byte {
	p := make([]byte, bigBody)
	x := uint64(0x5eed)
	for i := range p {
		x = splitmix64(x)
		p[i] = byte(x >> 56)
	}
	return p
}()

// scenario says how the server draws each attempt's latency.
type scenario int

const (
	// independent draws a latency for each attempt that reaches the
	// server, whatever the request: a hedge has a 98% chance of being fast.
	independent scenario = iota
	// perRequest derives the latency from the request id, so every
	// attempt of a slow request is slow: hedging cannot help.
	perRequest
)

func (s scenario) String() string {
	if s == perRequest {
		return "per-request"
	}
	return "independent"
}

// Latency distribution: slowShare of the attempts take slowLatency, the
// others uniformly fastMin to fastMin+fastSpan.
const (
	slowShare   = 0.02
	slowLatency = 250 * time.Millisecond
	fastMin     = 1 * time.Millisecond
	fastSpan    = 2 * time.Millisecond
)

// server is the loopback server of one scenario. For each attempt it counts
// a hit, reads and checks the request body (PUT), waits the attempt's
// latency (or until the client gives up on the attempt), and answers 200
// with a body of pattern: 4 KiB, or 512 KiB on bigPath. A PUT body that
// ends (EOF) other than pattern[:4 KiB] is counted as bad and answered 400
// at once; one whose reading fails (the client cancelled the attempt, or
// could not send the body) is counted as cut off.
//
// Latencies come from splitmix64 over a seed set by reset: in the
// independent scenario the k-th attempt to arrive gets draw k, in the
// per-request scenario the request with id i gets draw i.
type server struct {
	scenario scenario
	seed     atomic.Uint64
	draws    atomic.Uint64 // attempts that drew a latency since reset (independent)
	hits     atomic.Int64  // attempts that reached the handler since reset
	bad      atomic.Int64  // PUT bodies that arrived whole but short, long or wrong
	cut      atomic.Int64  // PUT bodies whose reading failed: the client gave up mid-body
	active   atomic.Int64  // handlers running now
	scratch  sync.Pool     // *[]byte of 32 KiB, for reading request bodies
}

// newServer returns the server of scenario sc; reset it before each
// measurement.
func newServer(sc scenario) *server {
	s := &server{scenario: sc}
	s.scratch.New = func() any { b := make([]byte, 32<<10); return &b }
	return s
}

// reset zeroes the counters and sets the seed of the latency draws, before
// a measurement.
func (s *server) reset(seed uint64) {
	s.seed.Store(seed)
	s.draws.Store(0)
	s.hits.Store(0)
	s.bad.Store(0)
	s.cut.Store(0)
}

// idle waits until no handler is running, or until limit has passed; it
// reports whether the server went idle.
func (s *server) idle(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for s.active.Load() != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.active.Add(1)
	defer s.active.Add(-1)
	s.hits.Add(1)
	if r.Method == http.MethodPut {
		buf := s.scratch.Get().(*[]byte)
		ok, err := checkBody(r.Body, pattern[:smallBody], *buf)
		s.scratch.Put(buf)
		if err != nil {
			if *debugCuts {
				fmt.Fprintln(os.Stderr, "hedgesim: request body cut off:", err)
			}
			s.cut.Add(1)
			return
		}
		if !ok {
			s.bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}

	t := time.NewTimer(s.latency(r))
	select {
	case <-t.C:
	case <-r.Context().Done(): // the client cancelled the attempt
		t.Stop()
		return
	}

	if r.URL.Path != bigPath {
		w.Header()["Content-Length"] = smallLength
		_, _ = w.Write(pattern[:smallBody])
		return
	}
	// Headers first, then the body in flushed chunks: a client that
	// cancels the winner's context once it has the headers loses the rest.
	w.Header()["Content-Length"] = bigLength
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for off := 0; off < bigBody; off += bigChunk {
		_ = rc.Flush()
		if _, err := w.Write(pattern[off : off+bigChunk]); err != nil {
			return
		}
	}
}

// debugCuts writes why each cut-off request body was cut off.
var debugCuts = flag.Bool("debug-cuts", false, "write why each cut-off request body was cut off")

// The Content-Length values of the responses, built once.
var (
	smallLength = []string{strconv.Itoa(smallBody)}
	bigLength   = []string{strconv.Itoa(bigBody)}
)

// latency draws the latency of the attempt r.
func (s *server) latency(r *http.Request) time.Duration {
	var k uint64
	if s.scenario == perRequest {
		k, _ = strconv.ParseUint(r.Header.Get(requestIDKey), 10, 64)
	} else {
		k = s.draws.Add(1)
	}
	return draw(s.seed.Load(), k)
}

// draw is the k-th latency of the sequence seed: slowLatency with
// probability slowShare, else uniform in [fastMin, fastMin+fastSpan).
func draw(seed, k uint64) time.Duration {
	x := splitmix64(seed*0x9e3779b97f4a7c15 + k)
	u := float64(x>>11) / (1 << 53)
	if u < slowShare {
		return slowLatency
	}
	v := float64(splitmix64(x)>>11) / (1 << 53)
	return fastMin + time.Duration(v*float64(fastSpan))
}

// splitmix64 is one step of the SplitMix64 generator: a well-mixed 64-bit
// hash of x.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// checkBody reads r to its end through buf and reports whether it was
// exactly want; err is the first read error other than io.EOF (a body cut
// short by a cancelled context, say), which makes ok false.
func checkBody(r io.Reader, want []byte, buf []byte) (ok bool, err error) {
	off, same := 0, true
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if off+n > len(want) || !bytes.Equal(buf[:n], want[off:off+n]) {
				same = false
			}
			off += n
		}
		if rerr == io.EOF {
			return same && off == len(want), nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}
