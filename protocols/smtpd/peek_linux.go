//go:build linux

package smtpd

import (
	"net"
	"syscall"
)

// pendingInput reports whether the client has sent bytes that nobody has
// read yet, without consuming them (MSG_PEEK).
func pendingInput(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		pending = err == nil && n > 0
		return true
	})
	return pending
}
