package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// RELIABILITY #5: a nearly full data volume refuses mail with 452 4.3.1
// before anything can be half-written, and accepts again once space is
// freed.
func TestDiskFullRefusesThenRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	s := startServer(t, filepath.Join(mnt, "data"))
	s.mustCLI("account", "add", "full@example.test", "--password", "pw")
	if err := sendMX(s.addr("smtp"), 1, 1, "full@example.test", func(string) {}); err != nil {
		t.Fatalf("send with room: %v", err)
	}
	var fs syscall.Statfs_t
	syscall.Statfs(mnt, &fs)
	free := int64(fs.Bavail) * int64(fs.Bsize)
	filler := filepath.Join(mnt, "filler")
	if out, err := exec.Command("fallocate", "-l", strings.TrimSpace(itoa(free-40<<20)), filler).CombinedOutput(); err != nil {
		t.Skipf("fallocate: %v %s", err, out)
	}
	err := sendMX(s.addr("smtp"), 2, 1, "full@example.test", func(string) {})
	if err == nil || !strings.Contains(err.Error(), "452") || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("send on a full disk: %v (want 452 4.3.1)", err)
	}
	os.Remove(filler)
	if err := sendMX(s.addr("smtp"), 3, 1, "full@example.test", func(string) {}); err != nil {
		t.Fatalf("send after freeing space: %v", err)
	}
}

func itoa(n int64) string {
	b := []byte{}
	if n <= 0 {
		return "1"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
