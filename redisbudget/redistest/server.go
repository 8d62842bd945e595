// Package redistest starts throwaway real Redis servers, and a pausable TCP
// proxy in front of them, for tests and benchmark programs.
//
// A [Server] is a redis-server child process listening on a free loopback
// port (127.0.0.1 only), with its own temporary directory and no
// persistence: every start begins with empty data. [Launch] works without a
// *testing.T; [Start] wraps it for tests and skips (or, in CI, fails) when
// redis-server is not installed.
//
// On Linux the child gets SIGKILL when the thread that started it exits
// (Pdeathsig), so a test binary that crashes or is killed does not leave
// redis-server processes behind. Go only ends its threads when a goroutine
// locked to one (runtime.LockOSThread) exits without unlocking, which could
// end such a child early; do not call Launch from a locked goroutine. On
// other systems Close, or a test's Cleanup, is the only way the child stops.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNoRedis is wrapped by the error of [Launch] when no redis-server binary
// is found in $PATH, /usr/sbin or /usr/bin.
var ErrNoRedis = errors.New("redistest: redis-server not found")

// E2EEnv is the environment variable that makes [Start] fail, instead of
// skip, when redis-server is missing; CI sets it to "1".
const E2EEnv = "RETRY_REDIS_E2E"

const (
	// startTimeout bounds how long a start waits for the server to answer PING.
	startTimeout = 5 * time.Second
	// stopTimeout bounds how long Kill waits for the process to go away and
	// for the port to refuse connections.
	stopTimeout = 5 * time.Second
	// launchAttempts is how many ports Launch tries when the port it picked
	// was taken before redis-server could bind it.
	launchAttempts = 5
	// probeTimeout bounds one readiness probe, so that a probe answered by
	// something else on the port (which never says PONG) is retried soon.
	probeTimeout = 250 * time.Millisecond
	// pollInterval is the pause between two readiness or shutdown probes.
	pollInterval = 5 * time.Millisecond
	// logTail is how many trailing bytes of the server log an error quotes.
	logTail = 2048
	logName = "redis-server.log"
)

// findRedis returns the path of the redis-server binary. Tests replace it.
var findRedis = func() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/redis-server", "/usr/bin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w in $PATH, /usr/sbin or /usr/bin; install Debian's redis-server (apt-get install redis-server)", ErrNoRedis)
}

// Server is a redis-server process on a free loopback port, with a
// temporary directory and no persistence (no RDB snapshots, no AOF). DEBUG
// commands are enabled for loopback clients, so DEBUG SLEEP can simulate a
// slow server. Its methods are safe for concurrent use.
type Server struct {
	bin   string
	dir   string
	port  int
	addr  string
	extra []string // more flags for redis-server

	mu     sync.Mutex
	proc   *process // the running child; nil when killed or closed
	closed bool
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// Launch starts a Server on a free 127.0.0.1 port and returns once it
// answers PING. The error wraps [ErrNoRedis] when the binary is missing; it
// quotes the server log when redis-server exits or does not answer within
// a few seconds. The caller must Close the Server.
func Launch() (*Server, error) { return launch() }

// LaunchCluster is Launch for a Redis Cluster of one node that serves
// every hash slot: enough for a redis.ClusterClient, and for checking that
// a client's multi-key commands stay within one slot (CROSSSLOT errors).
// It returns once the cluster state is ok.
func LaunchCluster() (*Server, error) {
	s, err := launch("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	if err != nil {
		return nil, err
	}
	if err := s.assignSlots(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// assignSlots gives the node every hash slot and waits for the cluster
// state to be ok.
func (s *Server) assignSlots() error {
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "CLUSTER ADDSLOTSRANGE 0 16383\r\n"); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("redistest: CLUSTER ADDSLOTSRANGE: %q %v", line, err)
	}
	for {
		if _, err := io.WriteString(c, "CLUSTER INFO\r\n"); err != nil {
			return fmt.Errorf("redistest: %w", err)
		}
		head, err := r.ReadString('\n') // $<length>
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER INFO: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER INFO: %q", head)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("redistest: CLUSTER INFO: %w", err)
		}
		if strings.Contains(string(body), "cluster_state:ok") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func launch(extra ...string) (*Server, error) {
	bin, err := findRedis()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{bin: bin, dir: dir, extra: extra}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.port = port
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, inUse, err := s.start()
		if err == nil {
			s.proc = p
			return s, nil
		}
		if !inUse || attempt == launchAttempts {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		// Someone took the port between freePort and the bind: pick another.
	}
}

// Start is [Launch] for tests: it registers tb.Cleanup to Close the server.
// When redis-server is not installed it skips the test, or fails it when the
// environment variable RETRY_REDIS_E2E is "1" (as CI sets it). Any other
// start failure fails the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, Launch)
}

// StartCluster is [LaunchCluster] for tests, as Start is for Launch.
func StartCluster(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, LaunchCluster)
}

func start(tb testing.TB, launch func() (*Server, error)) *Server {
	tb.Helper()
	s, err := launch()
	if errors.Is(err, ErrNoRedis) {
		msg := "redis-server not found; install Debian's redis-server or set PATH to a directory holding it (with " +
			E2EEnv + "=1 this is a failure, not a skip): " + err.Error()
		if os.Getenv(E2EEnv) == "1" {
			tb.Fatal(msg)
		} else {
			tb.Skip(msg)
		}
		return nil
	}
	if err != nil {
		tb.Fatal(err)
		return nil
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("redistest: close %s: %v", s.Addr(), err)
		}
	})
	return s
}

// Addr returns the server's address, "127.0.0.1:port". It stays the same
// across Kill and Restart.
func (s *Server) Addr() string { return s.addr }

// Kill simulates a crash: it sends SIGKILL and returns once the process is
// gone and the port refuses connections. Killing a server that is not
// running (already killed) does nothing and returns nil; after Close it
// returns an error.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("redistest: kill %s: server closed", s.addr)
	}
	if s.proc == nil {
		return nil
	}
	p := s.proc
	s.proc = nil
	if err := p.kill(); err != nil {
		return fmt.Errorf("redistest: kill %s: %w", s.addr, err)
	}
	deadline := time.Now().Add(stopTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if c != nil {
			_ = c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: kill %s: port still does not refuse connections after %v (last dial: %v)", s.addr, stopTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// Restart starts the server again on the same port, with empty data, after
// [Server.Kill], and returns once it answers PING. It fails when the server
// is running or closed, or when the port has been taken meanwhile; the
// server then stays down and Restart may be called again.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("redistest: restart %s: server closed", s.addr)
	}
	if s.proc != nil {
		return fmt.Errorf("redistest: restart %s: server is running; Kill it first", s.addr)
	}
	p, _, err := s.start()
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

// Close stops the server for good (SIGKILL: there is nothing to save) and
// removes its temporary directory. It is idempotent: later calls return
// nil. Other methods fail after Close, except Addr.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.proc != nil {
		errs = append(errs, s.proc.kill())
		s.proc = nil
	}
	errs = append(errs, os.RemoveAll(s.dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redistest: close %s: %w", s.addr, err)
	}
	return nil
}

// start runs redis-server on s.port and waits until it answers PING. inUse
// reports that it failed because the port was taken.
func (s *Server) start() (p *process, inUse bool, err error) {
	logPath := filepath.Join(s.dir, logName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("redistest: %w", err)
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logFile.Close()
		return nil, false, fmt.Errorf("redistest: %w", err)
	}
	cmd := exec.Command(s.bin, append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--enable-debug-command", "local",
		"--loglevel", "warning",
	}, s.extra...)...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile // an *os.File: no copying goroutine
	cmd.Stderr = logFile
	configure(cmd)
	err = cmd.Start()
	_ = logFile.Close() // the child has its own descriptor
	if err != nil {
		return nil, false, fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}
	p = &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	fail := func(why string) (*process, bool, error) {
		_ = p.kill()
		log := readLog(logPath, logStart)
		inUse := strings.Contains(log, "Address already in use")
		return nil, inUse, fmt.Errorf("redistest: redis-server on %s %s; log %s:\n%s", s.addr, why, logPath, tail(log))
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fail("exited: " + cmd.ProcessState.String())
		default:
		}
		if ping(s.addr, cmd.Process.Pid) == nil {
			return p, false, nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Sprintf("did not answer PING within %v", startTimeout))
		}
		time.Sleep(pollInterval)
	}
}

// kill sends SIGKILL and waits until the process has been reaped.
func (p *process) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// os.Process.Kill cannot hit a recycled pid (Go tracks the child by
	// pidfd on Linux), unlike a raw kill(2).
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("redis-server pid %d still running %v after SIGKILL", p.cmd.Process.Pid, stopTimeout)
	}
}

// ping checks that addr answers PING with +PONG and that the answering
// server is the process pid, not some other Redis that took the port.
func ping(addr string, pid int) error {
	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, "PING\r\nINFO server\r\n"); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(line, "$"), "\r\n"))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return fmt.Errorf("INFO answered %q", line)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(r, info); err != nil {
		return err
	}
	if !bytes.Contains(info, []byte("\r\nprocess_id:"+strconv.Itoa(pid)+"\r\n")) {
		return fmt.Errorf("%s is served by another process than pid %d", addr, pid)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: pick a port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("redistest: pick a port: %w", err)
	}
	return port, nil
}

// readLog returns the log file's content from offset on, or a note on why
// it could not be read.
func readLog(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}

// tail returns at most logTail trailing bytes of log.
func tail(log string) string {
	if len(log) > logTail {
		return "..." + log[len(log)-logTail:]
	}
	if log == "" {
		return "(empty)"
	}
	return log
}
