package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// proxyDialTimeout bounds how long the proxy waits to connect to its target.
const proxyDialTimeout = 2 * time.Second

// Proxy is a TCP proxy on a free 127.0.0.1 port in front of a target
// address. Each accepted connection gets its own connection to the target,
// dialled when it is accepted; when that dial fails the accepted connection
// is closed.
//
// A Proxy can pause: while paused, bytes in both directions are held (not
// dropped) and connections stay open, so a client sees a Redis that answers
// slowly or not at all; Resume delivers the held bytes in order. A new Proxy
// is not paused. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	resume chan struct{} // nil when not paused; closed by Resume
	conns  map[net.Conn]struct{}
	closed bool
}

// NewProxy listens on a free 127.0.0.1 port and forwards every connection to
// target. The caller must Close the Proxy.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: proxy listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Pause holds all bytes in both directions from now on, on existing and new
// connections, until Resume. Bytes already being written may still pass.
// Pausing a paused proxy does nothing.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil {
		p.resume = make(chan struct{})
	}
}

// Resume delivers the held bytes and lets traffic flow again. Resuming a
// proxy that is not paused does nothing.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
}

// Close closes the listener and every connection, drops held bytes, and
// returns once all of the proxy's goroutines have ended. It is idempotent:
// later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	err := p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("redistest: proxy close: %w", err)
	}
	return nil
}

// track registers c so that Close closes it; it reports false, having
// closed c, when the proxy is already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// accept runs until the listener is closed.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (such as too many open files): back off
			// briefly rather than spin.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects client to the target and copies both ways until both
// directions have ended.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	d := net.Dialer{Timeout: proxyDialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(server, client)
	}()
	p.pipe(client, server)
	<-done
}

// pipe copies from src to dst, holding each chunk while the proxy is
// paused. When src ends cleanly it half-closes dst (after any held bytes);
// on any other failure it closes both, which also ends the other direction.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 || errors.Is(rerr, io.EOF) {
			if !p.wait() {
				return // closed: Close has closed the connections
			}
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				_ = src.Close()
				_ = dst.Close()
				return
			}
		}
		if rerr != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && errors.Is(rerr, io.EOF) {
				if cw.CloseWrite() == nil {
					return
				}
			}
			_ = src.Close()
			_ = dst.Close()
			return
		}
	}
}

// wait blocks while the proxy is paused; it reports false when the proxy
// was closed.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	resume := p.resume
	p.mu.Unlock()
	if resume == nil {
		return p.ctx.Err() == nil
	}
	select {
	case <-resume:
		return p.ctx.Err() == nil
	case <-p.ctx.Done():
		return false
	}
}
