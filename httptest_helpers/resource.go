package httptest_helpers

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Resource serves one resource the way a careful origin server does
// (RFC 9110): GET and HEAD, a strong ETag and a Last-Modified date, single
// byte ranges (200, 206, 416), If-Range, and the preconditions If-Match,
// If-None-Match, If-Unmodified-Since and If-Modified-Since. It is a Step,
// and an http.Handler for servers of your own.
//
// Its options make it fail on purpose, so that a test can check what a
// download does: CutAfter breaks responses after given byte counts,
// ChangeAfter changes the content (and ETag) between requests, IgnoreRange
// turns Range support off, WeakETag and NoValidators take away what a
// resume needs, Gzip serves an encoded representation. Requests and
// BytesSent report what clients asked and what they were sent.
//
//	res := httptest_helpers.NewResource(data).CutAfter(1<<20, 3<<20)
//	srv := httptest_helpers.NewServer(t, res)
//	// The first GET breaks after 1 MiB of body, the second (a resume,
//	// say) after 3 MiB of its own body; later responses are whole.
//
// Every response but a 304 carries a Content-Length; those with the
// representation (200, 206, HEAD) carry Content-Type:
// application/octet-stream. A method other than GET and HEAD is answered
// 405, with Allow: GET, HEAD.
// Counts (requests, responses with a body, bytes) live in the Resource:
// use a new one per test. Its methods are safe for concurrent use, with
// each other and with requests; an option set while requests run applies
// to the requests that arrive after it.
type Resource struct {
	sent atomic.Int64

	mu           sync.Mutex
	versions     []*resourceVersion // in the order given; versions[0] is NewResource's
	cuts         []int64
	ignoreRange  bool
	weak         bool
	noValidators bool
	gzip         bool
	hits         int // requests received
	bodies       int // GET responses answered 200 or 206
	log          []ResourceRequest
}

// ResourceRequest is what one request to a Resource asked and what it got.
type ResourceRequest struct {
	// Method is the request's method.
	Method string
	// Range, IfRange, IfMatch and IfNoneMatch are the request's headers of
	// those names, "" when absent.
	Range, IfRange, IfMatch, IfNoneMatch string
	// Status is the status code answered.
	Status int
	// ContentRange is the Content-Range header answered (on 206 and 416),
	// or "".
	ContentRange string
	// ETag is the ETag header answered ("" with NoValidators, and on 405
	// and 412).
	ETag string
	// Version is the content served: 0 for NewResource's, k for the k-th
	// content given to ChangeAfter, counting calls.
	Version int
	// Sent is how many body bytes the server wrote for this response (up
	// to the cut for a cut response), counted as BytesSent counts them.
	Sent int64
	// Cut reports that CutAfter broke this response.
	Cut bool
}

type resourceVersion struct {
	from    int // the version serves requests from the (from+1)-th on
	content []byte
	id      int // its place among the calls: 0 for NewResource's

	// The representation: content, or its gzip encoding; computed on first
	// use, never mutated (a response may still be writing from it).
	rep []byte
	tag string // opaque tag with quotes: "0123456789abcdef"
}

// resourceEpoch is the Last-Modified of NewResource's content; each later
// version is one hour younger than the one before it.
var resourceEpoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// NewResource returns a Resource serving content, with:
//   - a strong ETag derived from the representation's bytes: a quoted
//     string of the first 8 bytes of its SHA-256 in hex, such as
//     "1f2e3d4c5b6a7980";
//   - Last-Modified: Wed, 01 Jan 2025 00:00:00 GMT (ChangeAfter's versions
//     are one hour younger each, in the order they are served);
//   - Accept-Ranges: bytes on the responses with the representation.
//
// The Resource keeps content; do not modify it afterwards.
func NewResource(content []byte) *Resource {
	return &Resource{versions: []*resourceVersion{{content: content}}}
}

// CutAfter breaks responses in the middle of their body. Every GET answered
// 200 or 206 counts, in the order of arrival: the k-th of them (from 0) is
// cut after counts[k] bytes of its own body. A response beyond the list,
// or whose count is negative or not smaller than its body, is whole.
//
// A cut response announces its full Content-Length, sends the first
// counts[k] bytes of the body and breaks: over HTTP/1 the connection is
// reset (a TCP RST, sent once the client has acknowledged those bytes, so
// that the client reads exactly counts[k] bytes, then gets ECONNRESET;
// where the acknowledgement cannot be observed, outside Linux, or when the
// response writer cannot be hijacked, the connection is closed after the
// bytes and the client gets io.ErrUnexpectedEOF); over HTTP/2 the stream
// is reset (RST_STREAM) after the bytes. A client never sees a clean end of
// body. (The wait for the acknowledgement ends early, and the reset may
// discard bytes not yet acknowledged, when the client goes away, stops
// reading for 5 s, or the Server closes.)
//
// CutAfter replaces the counts of an earlier call and returns r.
func (r *Resource) CutAfter(counts ...int64) *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cuts = append([]int64(nil), counts...)
	return r
}

// ChangeAfter serves content, with its own ETag and a younger
// Last-Modified, from the (n+1)-th request on: after n requests (of any
// method) to this Resource. A negative n is 0. Calls add up: each request
// gets the content of the call with the largest n not above the count of
// earlier requests (the later call among equal n). It returns r.
func (r *Resource) ChangeAfter(n int, content []byte) *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.versions = append(r.versions, &resourceVersion{from: max(n, 0), content: content, id: len(r.versions)})
	return r
}

// IgnoreRange makes the Resource a server without Range support: it
// answers GET with 200 and the whole body whatever Range and If-Range say,
// and sends no Accept-Ranges header. Preconditions (If-Match, …) still
// apply. It returns r.
func (r *Resource) IgnoreRange() *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ignoreRange = true
	return r
}

// WeakETag serves weak ETags (W/"…"): If-Range and If-Match, which compare
// strongly, never match them, so a careful client cannot resume on the
// ETag; If-None-Match, which compares weakly, still does. Last-Modified is
// unchanged. It returns r.
func (r *Resource) WeakETag() *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.weak = true
	return r
}

// NoValidators serves neither ETag nor Last-Modified: If-Range never
// matches, If-Match matches only "*", and the date conditions are ignored.
// It overrides WeakETag. It returns r.
func (r *Resource) NoValidators() *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noValidators = true
	return r
}

// Gzip serves every content gzip-encoded, whatever the request's
// Accept-Encoding (as a store of precompressed objects does), with
// Content-Encoding: gzip. The ETag, Content-Length, ranges and byte counts
// are those of the compressed bytes. Go's Transport decompresses the body
// on the fly (and drops Content-Length and Content-Encoding) only when it
// added Accept-Encoding: gzip itself, which it does not for a request that
// sets Accept-Encoding or Range. It returns r.
func (r *Resource) Gzip() *Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gzip = true
	for i, v := range r.versions { // representations change: recompute them
		r.versions[i] = &resourceVersion{from: v.from, content: v.content, id: v.id}
	}
	return r
}

// BytesSent returns how many body bytes the Resource has written to its
// connections so far, over all responses, whole and cut (headers not
// counted). Bytes are counted as they are handed to the connection, before
// the write returns, so every byte a client has received is counted by the
// time it reads it; bytes a failed write did not take are uncounted when
// it returns.
func (r *Resource) BytesSent() int64 { return r.sent.Load() }

// Requests returns a record of each request received so far, in the order
// of arrival.
func (r *Resource) Requests() []ResourceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ResourceRequest(nil), r.log...)
}

// ServeHTTP serves the resource to one request, so that a Resource can be
// the handler of a server of your own. A cut response panics with
// http.ErrAbortHandler over HTTP/2: leave the panic to net/http.
func (r *Resource) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.serveDone(nil, w, req)
}

func (r *Resource) serve(s *Server, w http.ResponseWriter, req *http.Request) {
	r.serveDone(s.done, w, req)
}

// resourceResponse is what one request gets, decided under the lock.
type resourceResponse struct {
	status int
	header http.Header
	body   []byte // what a whole response sends; nil without body
	cut    int64  // cut after this many body bytes; -1: whole
	rec    int    // index in log
}

func (r *Resource) serveDone(done <-chan struct{}, w http.ResponseWriter, req *http.Request) {
	resp := r.answer(req)
	if resp.cut < 0 {
		for k, v := range resp.header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.status)
		r.write(w, resp.body, resp.rec)
		return
	}
	if conn, ok := hijack(w, req); ok {
		r.cutConn(done, conn, resp)
		return
	}
	// HTTP/2, or a writer that cannot be hijacked: send the bytes, then
	// abort, which resets the stream (HTTP/2) or closes the connection.
	for k, v := range resp.header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.status)
	r.write(w, resp.body[:resp.cut], resp.rec)
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// write writes body in chunks, counting each chunk (in BytesSent and in
// the log's record rec) before writing it.
func (r *Resource) write(w io.Writer, body []byte, rec int) {
	const chunk = 64 << 10
	for len(body) > 0 {
		c := body[:min(chunk, len(body))]
		r.count(rec, int64(len(c)))
		n, err := w.Write(c)
		if n < len(c) {
			r.count(rec, int64(n-len(c)))
		}
		if err != nil {
			return
		}
		body = body[n:]
	}
}

func (r *Resource) count(rec int, n int64) {
	r.sent.Add(n)
	r.mu.Lock()
	r.log[rec].Sent += n
	r.mu.Unlock()
}

// cutConn writes a cut response to a hijacked HTTP/1 connection: the
// headers, the first resp.cut bytes of the body, then a reset.
func (r *Resource) cutConn(done <-chan struct{}, conn net.Conn, resp resourceResponse) {
	resp.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	_ = resp.header.Write(&head)
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err == nil {
		r.write(conn, resp.body[:resp.cut], resp.rec)
	}

	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn() // no close_notify: the connection just breaks
	}
	tcp, ok := raw.(*net.TCPConn)
	if !ok || !waitAcked(done, tcp) {
		_ = raw.Close() // the bytes, then FIN
		return
	}
	_ = tcp.SetLinger(0) // RST
	_ = tcp.Close()
}

// waitAcked waits until the peer has acknowledged every byte written to c,
// so that a reset discards nothing the peer was sent, or until the peer
// goes away, or it stops reading for 5 s, or done is closed. It reports
// false at once where the unacknowledged bytes cannot be observed.
func waitAcked(done <-chan struct{}, c *net.TCPConn) bool {
	const stall = 5 * time.Second
	last, ok := unacked(c)
	if !ok {
		return false
	}
	progress := time.Now()
	pause := 100 * time.Microsecond
	var buf [512]byte
	for last > 0 {
		select {
		case <-done:
			return true
		default:
		}
		// Wait by reading: it also notices a peer that has gone away.
		_ = c.SetReadDeadline(time.Now().Add(pause))
		if _, err := c.Read(buf[:]); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return true
			}
		}
		pause = min(2*pause, 10*time.Millisecond)
		n, _ := unacked(c)
		if n < last {
			progress = time.Now()
		} else if time.Since(progress) > stall {
			return true
		}
		last = n
	}
	return true
}

// answer decides the response to req and records the request.
func (r *Resource) answer(req *http.Request) resourceResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, age := r.version(r.hits)
	r.hits++
	rec := ResourceRequest{
		Method:      req.Method,
		Range:       req.Header.Get("Range"),
		IfRange:     req.Header.Get("If-Range"),
		IfMatch:     req.Header.Get("If-Match"),
		IfNoneMatch: req.Header.Get("If-None-Match"),
		Version:     v.id,
	}
	resp := resourceResponse{header: http.Header{}, cut: -1, rec: len(r.log)}
	defer func() {
		rec.Status = resp.status
		rec.ContentRange = resp.header.Get("Content-Range")
		rec.ETag = resp.header.Get("ETag")
		rec.Cut = resp.cut >= 0
		r.log = append(r.log, rec)
	}()
	h := resp.header

	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		h.Set("Content-Length", "0")
		resp.status = http.StatusMethodNotAllowed
		return resp
	}

	rep := r.representation(v)
	size := int64(len(rep))
	etag, lastMod := "", time.Time{}
	if !r.noValidators {
		etag = v.tag
		if r.weak {
			etag = "W/" + etag
		}
		lastMod = resourceEpoch.Add(time.Duration(age) * time.Hour)
	}
	validators := func() {
		if etag != "" {
			h.Set("ETag", etag)
			h.Set("Last-Modified", lastMod.Format(http.TimeFormat))
		}
	}

	// Preconditions, in the order of RFC 9110, section 13.2.2.
	if im := req.Header.Get("If-Match"); im != "" {
		if !matchETag(im, etag, true) {
			h.Set("Content-Length", "0")
			resp.status = http.StatusPreconditionFailed
			return resp
		}
	} else if t, err := http.ParseTime(req.Header.Get("If-Unmodified-Since")); err == nil && etag != "" && lastMod.After(t) {
		h.Set("Content-Length", "0")
		resp.status = http.StatusPreconditionFailed
		return resp
	}
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		if matchETag(inm, etag, false) {
			validators()
			resp.status = http.StatusNotModified
			return resp
		}
	} else if t, err := http.ParseTime(req.Header.Get("If-Modified-Since")); err == nil && etag != "" && !lastMod.After(t) {
		validators()
		resp.status = http.StatusNotModified
		return resp
	}

	h.Set("Content-Type", "application/octet-stream")
	validators()
	if !r.ignoreRange {
		h.Set("Accept-Ranges", "bytes")
	}
	if r.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	resp.status, resp.body = http.StatusOK, rep
	if req.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		resp.body = nil
		return resp
	}

	if rg := req.Header.Get("Range"); rg != "" && !r.ignoreRange && r.ifRange(req.Header.Get("If-Range"), etag, lastMod) {
		switch start, end, kind := parseRange(rg, size); kind {
		case rangeSatisfiable:
			resp.status, resp.body = http.StatusPartialContent, rep[start:end+1]
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		case rangeUnsatisfiable:
			h.Del("Content-Type")
			h.Del("Content-Encoding")
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			h.Set("Content-Length", "0")
			resp.status, resp.body = http.StatusRequestedRangeNotSatisfiable, nil
			return resp
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	if r.bodies < len(r.cuts) {
		if c := r.cuts[r.bodies]; c >= 0 && c < int64(len(resp.body)) {
			resp.cut = c
		}
	}
	r.bodies++
	return resp
}

// version returns the version that the (hits+1)-th request gets, and its
// age: its place in the order in which versions are served.
func (r *Resource) version(hits int) (*resourceVersion, int) {
	cur := r.versions[0]
	for _, v := range r.versions[1:] {
		if v.from <= hits && v.from >= cur.from {
			cur = v
		}
	}
	age := 0
	for _, v := range r.versions {
		if v != cur && (v.from < cur.from || v.from == cur.from && v.id < cur.id) {
			age++
		}
	}
	return cur, age
}

// representation returns the bytes served for v, computing them (and the
// ETag) on first use. r.mu is held.
func (r *Resource) representation(v *resourceVersion) []byte {
	if v.rep != nil {
		return v.rep
	}
	rep := v.content
	if r.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b) // no name, no time: the same bytes every time
		_, _ = zw.Write(v.content)
		_ = zw.Close()
		rep = b.Bytes()
	}
	if rep == nil {
		rep = []byte{}
	}
	sum := sha256.Sum256(rep)
	v.rep, v.tag = rep, `"`+hex.EncodeToString(sum[:8])+`"`
	return rep
}

// ifRange reports whether a Range request with the If-Range value ir may be
// answered with a range: ir is absent, or it is a strong ETag equal to the
// current one (never when the current one is weak), or an HTTP-date equal
// to the current Last-Modified (RFC 9110, section 13.1.5).
func (r *Resource) ifRange(ir, etag string, lastMod time.Time) bool {
	if ir == "" {
		return true
	}
	if etag == "" {
		return false
	}
	if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
		tag, rest := scanETag(ir)
		return tag != "" && strings.TrimSpace(rest) == "" && strongEqual(tag, etag)
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Equal(lastMod)
}

// matchETag reports whether the If-Match or If-None-Match list matches the
// current ETag ("" when there is none), with the strong or the weak
// comparison. "*" matches any current representation.
func matchETag(list, etag string, strong bool) bool {
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		if list[0] == '*' {
			return true
		}
		tag, rest := scanETag(list)
		if tag == "" {
			return false // malformed: nothing after it can be trusted
		}
		if etag != "" && (strong && strongEqual(tag, etag) || !strong && weakEqual(tag, etag)) {
			return true
		}
		list = rest
	}
}

// scanETag splits an entity-tag (W/"…" or "…") off the front of s; tag is
// "" if s does not start with one.
func scanETag(s string) (tag, rest string) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s) < start+2 || s[start] != '"' {
		return "", s
	}
	end := strings.IndexByte(s[start+1:], '"')
	if end < 0 {
		return "", s
	}
	end += start + 2
	return s[:end], s[end:]
}

func strongEqual(a, b string) bool {
	return a == b && !strings.HasPrefix(a, "W/")
}

func weakEqual(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

const (
	rangeIgnored = iota // absent, invalid or several ranges: the whole body
	rangeSatisfiable
	rangeUnsatisfiable
)

// parseRange parses a Range header for a representation of size bytes:
// one range of bytes, first-last (last clamped to the end), first-, or
// -suffix. Anything else (another unit, a malformed or reversed range,
// several ranges) is ignored, which RFC 9110 allows.
func parseRange(h string, size int64) (start, end int64, kind int) {
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return 0, 0, rangeIgnored
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, rangeIgnored
	}
	if first == "" { // -suffix: the last bytes
		n, ok := parseDigits(last)
		if !ok {
			return 0, 0, rangeIgnored
		}
		if n == 0 || size == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		return max(size-n, 0), size - 1, rangeSatisfiable
	}
	start, ok = parseDigits(first)
	if !ok {
		return 0, 0, rangeIgnored
	}
	end = size - 1
	if last != "" {
		n, ok := parseDigits(last)
		if !ok || n < start {
			return 0, 0, rangeIgnored
		}
		end = min(n, size-1)
	}
	if start >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return start, end, rangeSatisfiable
}

// parseDigits parses 1*DIGIT; a number too large for int64 is MaxInt64
// (beyond any representation).
func parseDigits(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 1<<63 - 1, true
	}
	return n, true
}
