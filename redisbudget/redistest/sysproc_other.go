//go:build !linux

package redistest

import "os/exec"

// configure leaves the command as it is: without Pdeathsig, staying in the
// Go program's process group at least lets a terminal's Ctrl-C stop
// redis-server along with the program.
func configure(*exec.Cmd) {}
