//go:build !linux

package httptest_helpers

import "net"

// unacked cannot tell, outside Linux, how many bytes written to c the peer
// has not acknowledged yet.
func unacked(*net.TCPConn) (int, bool) { return 0, false }
