package outbound

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RELIABILITY #14 against a foreign peer: Postfix's smtp-sink captures what
// we send. A body full of bare LFs, bare CRs and lone dots arrives as one
// message for one recipient, its lines intact.
func TestSmuggleFreeAtSmtpSink(t *testing.T) {
	t.Parallel()
	sink, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Skip("smtp-sink not installed (Debian package postfix)")
	}
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	ls[0].Close()
	// The sink drops privileges to nobody, which cannot enter t.TempDir().
	dir, err := os.MkdirTemp("", "outbound-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	args := []string{"-d", filepath.Join(dir, "%M."), "127.0.0.2:" + strconv.Itoa(port), "10"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(sink, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	defer func() {
		if t.Failed() {
			t.Log("smtp-sink: " + stderr.String())
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "smtp-sink to listen", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", "127.0.0.2:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	body := "Subject: smuggle\n\nhello\n.\nMAIL FROM:<evil@x>\nRCPT TO:<victim@far.test>\nDATA\n\r.\r\nSubject: second\r\n\r\nend"
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, body)
	defer func() {
		if t.Failed() {
			t.Log(te.rendered(id))
		}
	}()
	te.waitQueueEmpty(10 * time.Second)
	var files []string
	waitFor(t, "the dump", 5*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*"))
		return len(files) >= 1
	})
	time.Sleep(200 * time.Millisecond)
	files, _ = filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages at the sink", len(files))
	}
	b, _ := os.ReadFile(files[0])
	dump := string(b)
	if strings.Count(dump, "X-Rcpt-Args:") != 1 || !strings.Contains(dump, "X-Rcpt-Args: <bob@far.test>") {
		t.Fatalf("dump:\n%s", dump)
	}
	for _, want := range []string{"\nhello\n.\nMAIL FROM:<evil@x>\nRCPT TO:<victim@far.test>\nDATA\n\n.\nSubject: second\n\nend\n"} {
		if !strings.Contains(dump, want) {
			t.Fatalf("dump lacks %q:\n%s", want, dump)
		}
	}
}
