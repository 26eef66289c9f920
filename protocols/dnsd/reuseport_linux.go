package dnsd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort lets several UDP sockets share one port; the kernel spreads clients
// over them by address hash, so readers do not contend on one socket (Linux 3.9+).
// Only sockets of the same user may join the group.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

const canReusePort = true
