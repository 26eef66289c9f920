package storage

import (
	"fmt"
	"syscall"
)

// ErrNoSpace: the data folder is (nearly) full. Mail is refused with a
// temporary error before the disk fills, so Raft's log and the state file
// never hit ENOSPC mid-write (RELIABILITY #5; Postfix's queue_minfree).
var ErrNoSpace = fmt.Errorf("insufficient storage: %w", syscall.ENOSPC)

// MinFreeBytes is the reserve kept free in the data folder.
const MinFreeBytes = 64 << 20

// SpaceLow reports whether storing need more bytes would eat into the
// reserve.
func (s *Store) SpaceLow(need int64) bool {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.blobs.dir, &fs); err != nil {
		return false
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	return free-need < s.minFree
}
