package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// Request bodies. A retry must send the same bytes as the first attempt,
// never an empty or truncated body. Three ways, in order of preference:
//   - the request has GetBody: attempt 1 sends req.Body, each retry a fresh
//     body from GetBody. Bodies are never rewound with Seek, since net/http
//     may still be reading an earlier attempt's body after RoundTrip
//     returned (golang/go#51907).
//   - the body fits in maxBufferedBody: it is read once into a pooled
//     buffer and every attempt reads its own reader over that buffer.
//   - it does not fit: it is sent once, whole, and that attempt is not
//     retried. Either it is streamed (a ContentLength above the limit, or a
//     limit of 0: nothing was read ahead, the caller's body goes out as it
//     is) or prefixed (buffering found it too large: the bytes read ahead,
//     then the rest of the caller's body).
//
// Who closes the caller's body (req.Body). RoundTrip owns it from the moment
// it is called, since a RoundTripper must close it, even on errors. It
// gives it away at most once, through requestBody.handOff, and finish
// closes it when RoundTrip returns if nobody took it:
//   - GetBody: handed to the base RoundTripper with attempt 1, which closes
//     it; each retry's body from GetBody is the base's too. A GetBody that
//     fails on a retry has nothing of the caller's left to close.
//   - buffered: closed as soon as all of it is in the buffer, before
//     attempt 1; attempts send readers over the buffer.
//   - streamed: handed to the base with the one attempt, as that attempt's
//     body.
//   - prefixed: handed to the base inside the one attempt's body, whose
//     Close closes it.
//   - any other path: buffering fails (a Read error, the context ending),
//     or the loop ends before the attempt that takes it: finish closes it.
//     (A ContentLength that does not match a buffered body fails after the
//     body was closed. A request RoundTrip refuses before prepare, such as
//     one without a URL, is closed by RoundTrip itself.)
//
// The rules of buffering:
//   - The limit is exact: a body of at most maxBufferedBody bytes is
//     buffered and replayed, one of maxBufferedBody+1 bytes or more is sent
//     once, whatever the shape of the reader's Reads (short reads, the last
//     bytes returned together with io.EOF). To tell the two apart, at most
//     maxBufferedBody+1 bytes are read ahead. A ContentLength above the limit
//     sends the body once without reading any of it ahead. Every limit from
//     0 to math.MaxInt64 works; a declared ContentLength reserves at most
//     maxPrealloc bytes up front, the rest grows as the bytes arrive.
//   - The request's context bounds the buffering: it is checked before each
//     Read, and once it is done RoundTrip closes the body and returns an
//     error wrapping both ctx.Err() and context.Cause(ctx), sending nothing.
//     A single Read that never returns is not interrupted: doing that means
//     closing the body from a context.AfterFunc, which costs 3 allocations
//     on every buffered request whose context can end (most of them, since
//     http.Client.Timeout gives every request a deadline). A caller whose
//     body can block forever should close it when its context ends, or give
//     the request a GetBody.
//   - Trailers: a request with Trailer keys and no declared length
//     (ContentLength 0 or -1, as net/http requires for trailers) is still
//     buffered, and every attempt goes out chunked (ContentLength -1), so
//     every attempt carries the trailers. The trailer values are those in
//     req.Trailer once the body has been read to its end, before attempt 1.
//     Other buffered bodies go out with their Content-Length.
//   - The GetBody of an attempt's request (which net/http calls inside its
//     RoundTrip to rewind a body on a dead reused connection) opens the
//     buffer only while the RoundTrip that filled it holds it. Called later,
//     say on resp.Request, or on a copy of the request made by the base, it
//     returns the same bytes if the buffer is still held, else an error: it
//     never sees a buffer that went back to the pool. That costs one
//     allocation per buffered RoundTrip (a func value bound to the buffer's
//     generation); clearing GetBody once the base has returned would cost
//     none, but cannot reach the copies a base may hand on (instrumenting
//     wrappers clone the request, and resp.Request is then the clone).
//   - Expect: 100-continue gets no special treatment: a body without GetBody
//     is read (up to the limit, plus one byte) before attempt 1, so before
//     the server has answered 100 Continue. An http.Transport with an
//     ExpectContinueTimeout (cleanhttp's has 1s) still puts none of it on
//     the wire before the 100 Continue, but reading it has effects
//     upstream: behind a Go reverse proxy, the
//     proxy's server answers its own client 100 Continue on the first Read,
//     so that client sends its whole body even if the server behind then
//     rejects the request. Sending attempt 1 straight from the caller's body
//     while copying it into the buffer would avoid that, but net/http may
//     still be reading that body when RoundTrip has the response, so whether
//     the request is replayable, and the rest of the bytes for a retry,
//     would have to wait for net/http to let go of it: not done. A caller
//     who needs the body unread until the server agrees gives the request a
//     GetBody (attempt 1 then streams req.Body), a ContentLength above the
//     limit, or WithMaxBufferedBody(0) (sent once, read only as it is sent).

// bodyMode says how a request's body is sent.
type bodyMode int

const (
	bodyNone     bodyMode = iota // no body: every attempt sends none
	bodyGetBody                  // GetBody gives each retry a fresh body
	bodyBuffered                 // replayed from a pooled buffer
	// bodyStreamed: the caller's body goes out as it is, in one attempt
	// only; none of it was read ahead (ContentLength above the limit, or a
	// limit of 0).
	bodyStreamed
	// bodyPrefixed: the bytes read ahead into the buffer, then the rest of
	// the caller's body, in one attempt only (buffering found the body
	// larger than the limit).
	bodyPrefixed
)

// maxPrealloc is the most a declared ContentLength reserves up front: a
// length the body does not have must not cost more memory than that.
const maxPrealloc = 8 << 20

// bodyBuffer holds a request body's bytes for replay. It is shared by the
// RoundTrip that filled it and by every reader handed to the base
// RoundTripper; it returns to the pool when the last of them lets go, so
// no attempt still being written by net/http can see it reused.
type bodyBuffer struct {
	data []byte
	refs atomic.Int32 // 0 while in the pool
	// gen counts the times the buffer left the pool: a GetBody made for one
	// filling tells it from the next.
	gen atomic.Uint64
}

var bodyPool = sync.Pool{New: func() any { return new(bodyBuffer) }}

func getBodyBuffer() *bodyBuffer {
	b := bodyPool.Get().(*bodyBuffer)
	b.gen.Add(1) // before refs: a reopen that sees refs 1 sees the new gen
	b.refs.Store(1)
	return b
}

func (b *bodyBuffer) unref() {
	if b.refs.Add(-1) == 0 {
		b.data = b.data[:0]
		bodyPool.Put(b)
	}
}

// newBody returns a reader over the buffered bytes for a holder of a
// reference; the reader holds one of its own until it is closed.
func (b *bodyBuffer) newBody() io.ReadCloser {
	b.refs.Add(1)
	return &bufferBody{buf: b}
}

var errBodyReleased = errors.New("retry: GetBody after the Transport's RoundTrip returned: the buffered request body is gone")

// reopen is GetBody for filling gen of b: a reader over the same bytes if
// that filling is still held, else an error. It never takes a reference
// to a buffer in the pool, nor keeps one to a later filling.
func (b *bodyBuffer) reopen(gen uint64) (io.ReadCloser, error) {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return nil, errBodyReleased
		}
		if b.refs.CompareAndSwap(n, n+1) {
			break
		}
	}
	// Held now, b cannot go back to the pool, so gen cannot change.
	if b.gen.Load() != gen {
		b.unref()
		return nil, errBodyReleased
	}
	return &bufferBody{buf: b}, nil
}

var errBadRead = errors.New("retry: the request body's Read returned an invalid count")

// fill reads r into b until EOF, until more than limit bytes are in b (at
// most limit+1 are), or until ctx is done. It reports whether it read all
// of r; b may then still hold more than limit bytes.
func (b *bodyBuffer) fill(ctx context.Context, r io.Reader, limit int64) (eof bool, err error) {
	for int64(len(b.data)) <= limit {
		if ctx.Err() != nil {
			return false, fmt.Errorf("retry: reading the request body: %w", contextError(ctx))
		}
		if len(b.data) == cap(b.data) {
			b.data = append(b.data, 0)[:len(b.data)]
		}
		space := b.data[len(b.data):cap(b.data)]
		// room >= 0, so room+1 cannot overflow even for limit MaxInt64.
		if room := limit - int64(len(b.data)); int64(len(space)) > room {
			space = space[:room+1]
		}
		n, err := r.Read(space)
		if n < 0 || n > len(space) {
			return false, errBadRead
		}
		b.data = b.data[:len(b.data)+n]
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("retry: reading the request body: %w", err)
		}
	}
	return false, nil
}

var errBodyClosed = errors.New("retry: read of a closed request body")

// bufferBody is one attempt's body over a bodyBuffer. net/http may call
// Close from another goroutine while a Read is under way; the mutex makes
// sure that once Close returns, no Read touches the buffer again.
type bufferBody struct {
	mu  sync.Mutex
	buf *bodyBuffer // nil once closed
	off int
}

func (r *bufferBody) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		return 0, errBodyClosed
	}
	if r.off >= len(r.buf.data) {
		return 0, io.EOF
	}
	n := copy(p, r.buf.data[r.off:])
	r.off += n
	return n, nil
}

func (r *bufferBody) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf != nil {
		r.buf.unref()
		r.buf = nil
	}
	return nil
}

// onceBody is the body of a bodyPrefixed attempt: the bytes already read,
// then the rest of the caller's body, unless that was already read to its
// end. Closing it closes the caller's body and lets go of the buffer.
type onceBody struct {
	bufferBody
	rest     io.ReadCloser
	restDone bool // rest has given io.EOF: do not read it again
}

func (r *onceBody) Read(p []byte) (int, error) {
	n, err := r.bufferBody.Read(p)
	if err == io.EOF {
		if r.restDone {
			return 0, io.EOF
		}
		return r.rest.Read(p)
	}
	return n, err
}

func (r *onceBody) Close() error {
	_ = r.bufferBody.Close()
	return r.rest.Close()
}

// requestBody is the per-RoundTrip state of the caller's body.
type requestBody struct {
	mode bodyMode
	buf  *bodyBuffer // bodyBuffered, bodyPrefixed
	// getBody is the GetBody of bodyBuffered attempts: buf.reopen for this
	// filling of buf.
	getBody func() (io.ReadCloser, error)
	// chunked keeps a bodyBuffered request's length unknown (-1), so that
	// net/http sends it chunked, with its trailers.
	chunked bool
	// eof says the caller's body was read to its end into buf
	// (bodyPrefixed).
	eof bool
	// owned is the caller's body while RoundTrip must close it: set in
	// prepare, cleared only by handOff (see the top of this file).
	owned io.ReadCloser
}

// prepare decides how req's body is sent, buffering it when it must, for
// no longer than req's context lasts. On error the caller's body has been
// closed.
func (b *requestBody) prepare(req *http.Request, limit int64) error {
	if req.Body == nil || req.Body == http.NoBody {
		b.mode = bodyNone
		return nil
	}
	b.owned = req.Body
	switch {
	case req.GetBody != nil:
		b.mode = bodyGetBody
	case req.ContentLength > limit || limit == 0:
		// Known too large, or nothing may be buffered: stream it as it is,
		// without reading ahead (so that Expect: 100-continue keeps its
		// meaning behind a proxy).
		b.mode = bodyStreamed
	default:
		return b.buffer(req, limit)
	}
	return nil
}

// buffer reads req's body ahead into a pooled buffer, at most limit+1
// bytes, for no longer than req's context lasts: bodyBuffered if all of it
// fit, else bodyPrefixed. On error the caller's body has been closed.
func (b *requestBody) buffer(req *http.Request, limit int64) error {
	b.buf = getBodyBuffer()
	if req.ContentLength > 0 {
		// +1: room for the Read that finds the end.
		b.buf.data = slices.Grow(b.buf.data, int(min(req.ContentLength, maxPrealloc))+1)
	}
	eof, err := b.buf.fill(req.Context(), req.Body, limit)
	if err != nil {
		b.finish()
		return err
	}
	n := int64(len(b.buf.data))
	if !eof || n > limit {
		b.mode = bodyPrefixed
		b.eof = eof
		return nil
	}
	b.mode = bodyBuffered
	_ = b.handOff().Close() // all of it is in the buffer
	if req.ContentLength > 0 && n != req.ContentLength {
		b.finish()
		return fmt.Errorf("retry: the request body has %d bytes but ContentLength is %d", n, req.ContentLength)
	}
	b.chunked = len(req.Trailer) > 0 && req.ContentLength <= 0
	if n > 0 || b.chunked {
		buf, gen := b.buf, b.buf.gen.Load()
		b.getBody = func() (io.ReadCloser, error) { return buf.reopen(gen) }
	}
	return nil
}

// changes reports whether attempt n needs a body other than the caller's
// req.Body: when it does not, the attempt can go out on the caller's own
// request, since a RoundTripper must not modify it.
func (b *requestBody) changes(n int) bool {
	switch b.mode {
	case bodyNone, bodyStreamed:
		return false
	case bodyGetBody:
		return n > 1
	}
	return true // bodyBuffered, bodyPrefixed
}

// replayable reports whether a later attempt can send the body again:
// every mode but the two that send the caller's body once.
func (b *requestBody) replayable() bool {
	return b.mode != bodyStreamed && b.mode != bodyPrefixed
}

// set gives attempt n's request r its body.
func (b *requestBody) set(r *http.Request, n int) error {
	switch b.mode {
	case bodyGetBody:
		if n == 1 {
			// r.Body is the caller's body already (see changes).
			b.handOff()
			return nil
		}
		body, getErr := r.GetBody()
		if getErr != nil {
			return fmt.Errorf("%w: GetBody for attempt %d: %w", ErrNotReplayable, n, getErr)
		}
		r.Body = body
		return nil
	case bodyBuffered:
		if b.getBody == nil { // empty, without trailers
			r.Body, r.GetBody, r.ContentLength = http.NoBody, nil, 0
			return nil
		}
		r.Body = b.buf.newBody()
		r.GetBody = b.getBody
		r.ContentLength = int64(len(b.buf.data))
		if b.chunked {
			r.ContentLength = -1
		}
		return nil
	case bodyStreamed:
		// r may be the caller's own request (see changes), whose Body is
		// the caller's body already: leave it alone.
		b.handOff()
		return nil
	case bodyPrefixed:
		b.buf.refs.Add(1)
		r.Body = &onceBody{bufferBody: bufferBody{buf: b.buf}, rest: b.handOff(), restDone: b.eof}
		return nil
	default: // bodyNone
		return nil
	}
}

// handOff ends RoundTrip's duty to close the caller's body and returns
// that body (nil if it was already given away): whoever it goes to now
// closes it, the base RoundTripper as the attempt's body (or inside it),
// or the caller of handOff itself.
func (b *requestBody) handOff() io.ReadCloser {
	body := b.owned
	b.owned = nil
	return body
}

// finish lets go of the buffer and closes the caller's body if no attempt
// took it.
func (b *requestBody) finish() {
	if body := b.handOff(); body != nil {
		_ = body.Close()
	}
	if b.buf != nil {
		b.buf.unref()
		b.buf = nil
	}
}
