//go:build !linux

package smtpd

import "net"

// pendingInput is only implemented on Linux; elsewhere the DATA
// synchronization check sees only the chunk that carried the command.
func pendingInput(net.Conn) bool { return false }
