package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServerDiesWithProgram runs the test binary as a helper program (see
// TestMain) that launches a server, kills the helper without any cleanup,
// and checks that Pdeathsig took the server down with it.
func TestServerDiesWithProgram(t *testing.T) {
	if _, err := findRedis(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	var addr, dir string
	var pid int
	_, err = fmt.Sscan(line, &addr, &dir, &pid)
	require.NoError(t, err, "helper said %q", line)
	t.Cleanup(func() {
		// If the test failed, the server may still run: kill it, after
		// checking that the pid is still that server (it works in dir).
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && strings.HasPrefix(cwd, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = os.RemoveAll(dir)
	})

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err, "the helper's server is up")
	require.NoError(t, c.Close())

	require.NoError(t, cmd.Process.Kill()) // no Close, no cleanup: a crash
	_ = cmd.Wait()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if c != nil {
			_ = c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}, 3*time.Second, 10*time.Millisecond, "redis-server outlived the program that launched it")
}
