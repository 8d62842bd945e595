package redistest

import (
	"os/exec"
	"syscall"
)

// configure puts redis-server in its own process group, so a terminal's
// Ctrl-C reaches only the Go program, and has the kernel SIGKILL it when the
// thread that started it (and so the Go program) dies.
func configure(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
