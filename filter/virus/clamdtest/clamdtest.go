// Package clamdtest starts a real clamd for tests: its own configuration,
// socket and signature database in a temp dir (no freshclam, no network).
// The database holds one signature for the EICAR test string, which is all
// the tests need; clamd refuses to start without at least one database.
package clamdtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter/virus"
)

// EICAR is the standard antivirus test string (eicar.org); harmless, and
// detected as "Tandem.Test.EICAR.UNOFFICIAL" by the database written here.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Signature is the name clamd reports for EICAR (".UNOFFICIAL" is added by
// clamd for databases it did not get from ClamAV).
const Signature = "Tandem.Test.EICAR.UNOFFICIAL"

// Server is a running clamd.
type Server struct {
	Socket string // unix socket path
	Dir    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// Addr is the --clamd flag value.
func (s *Server) Addr() string { return "unix:" + s.Socket }

// Options tune the clamd configuration.
type Options struct {
	StreamMaxLength string // clamd size syntax, default "4M"
}

// Start runs clamd until the test ends. It skips the test when clamd is
// not installed and the test is not running as root (CI runs as root and
// installs clamav-daemon, so there it never skips).
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/clamd", "/usr/local/sbin/clamd"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("clamd not installed (apt-get install clamav-daemon); needed for the antivirus tests")
		}
		t.Fatalf("clamd not installed: install clamav-daemon (.ci/test.sh does): %v", err)
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	// An extended (.ndb) signature: name:target type 0 (any file):offset
	// * (anywhere):hex body. It matches in the raw stream and in every
	// part clamd extracts (MIME, base64, zip).
	ndb := "Tandem.Test.EICAR:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n"
	if err := os.WriteFile(filepath.Join(db, "tandem.ndb"), []byte(ndb), 0o644); err != nil {
		t.Fatal(err)
	}
	if opt.StreamMaxLength == "" {
		opt.StreamMaxLength = "4M"
	}
	sock := filepath.Join(dir, "clamd.sock")
	conf := fmt.Sprintf(`LocalSocket %s
Foreground yes
DatabaseDirectory %s
LogFile %s
ScanArchive yes
ScanMail yes
MaxFileSize 10M
MaxScanSize 50M
MaxRecursion 16
MaxFiles 10000
StreamMaxLength %s
MaxThreads 4
`, sock, db, filepath.Join(dir, "clamd.log"), opt.StreamMaxLength)
	if os.Geteuid() == 0 {
		// clamd drops to the clamav user by default, which cannot read
		// our temp dir; as root in a test, stay root.
		conf += "User root\n"
	}
	cf := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{Socket: sock, Dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--config-file="+cf)
	out, err := os.Create(filepath.Join(dir, "clamd.out"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start clamd: %v", err)
	}
	go func() { _ = s.cmd.Wait(); out.Close(); close(s.done) }()
	t.Cleanup(s.Stop)
	c := &virus.Clamd{Network: "unix", Addr: sock}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			return s
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.out"))
			t.Fatalf("clamd exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.out"))
			t.Fatalf("clamd did not answer PING: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills clamd and waits for it; safe to call twice.
func (s *Server) Stop() {
	if s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}
