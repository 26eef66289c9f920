//go:build !linux

package dnsd

import "syscall"

// reusePort is not used outside Linux: one UDP socket per address.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

const canReusePort = false
