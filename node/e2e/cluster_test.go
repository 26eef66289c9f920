package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitCond(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// popCount logs in over POP3 (implicit TLS) and returns the message count.
func popCount(addr, user, pw string) (int, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return 0, err
	}
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(py, "-c", `
import poplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = poplib.POP3_SSL(sys.argv[1], int(sys.argv[2]), context=ctx, timeout=10)
c.user(sys.argv[3]); c.pass_(sys.argv[4]); print(c.stat()[0]); c.quit()
`, host, port, user, pw).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	var n int
	_, err = fmt.Sscan(string(out), &n)
	return n, err
}

func blobSums(t testing.TB, data string) map[string]bool {
	out := map[string]bool{}
	filepath.Walk(filepath.Join(data, "blobs"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".eml") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		sum := hex.EncodeToString(h.Sum(nil))
		if sum+".eml" != filepath.Base(p) {
			t.Errorf("blob %s has checksum %s", p, sum)
		}
		out[sum] = true
		return nil
	})
	return out
}

// Three processes on loopback: replication, client relay through any node,
// leader killed with SIGKILL, the survivors take over with nothing lost,
// and the killed node rejoins holding every blob (issue: high availability).
func TestClusterOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster drill")
	}
	var nodes []*server
	var dirs, caddrs []string
	for i := 0; i < 3; i++ {
		dirs = append(dirs, t.TempDir())
		caddrs = append(caddrs, freePort(t))
	}
	args := func(i int) []string {
		a := []string{"--node-id", fmt.Sprintf("n%d", i+1), "--cluster-addr", caddrs[i], "--gossip-addr", freePort(t)}
		if i > 0 {
			secret, _ := os.ReadFile(filepath.Join(dirs[0], "cluster-secret"))
			a = append(a, "--join", caddrs[0], "--cluster-secret", strings.TrimSpace(string(secret)))
		}
		return a
	}
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startServer(t, dirs[i], args(i)...))
	}
	nodes[0].mustCLI("account", "add", "ha@example.test", "--password", "pw")
	st := nodes[0].mustCLI("cluster", "status")
	if !strings.Contains(st, "n1 (this node)") || !strings.Contains(st, "n3") || strings.Count(st, "ok") < 3 {
		t.Fatalf("cluster status:\n%s", st)
	}
	// Mail sent through a follower is relayed to the leader.
	var acked []string
	send := func(via *server, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := sendMX(via.addr("smtp"), 50+len(acked), 1, "ha@example.test", func(id string) { acked = append(acked, id) }); err != nil {
				t.Fatalf("send via %s: %v", via.data, err)
			}
		}
	}
	send(nodes[1], 10)
	send(nodes[2], 10)
	if n, err := popCount(nodes[2].addr("pop3s"), "ha@example.test", "pw"); err != nil || n != 20 {
		t.Fatalf("POP3 through a follower: %d, %v", n, err)
	}
	// Kill the leader (n1 bootstrapped, so it leads).
	nodes[0].kill()
	start := time.Now()
	var took time.Duration
	waitCond(t, "survivors accept mail again", 20*time.Second, func() bool {
		err := sendMX(nodes[1].addr("smtp"), 900, 1, "ha@example.test", func(id string) { acked = append(acked, id) })
		if err == nil {
			took = time.Since(start)
		}
		return err == nil
	})
	t.Logf("first 250 after the leader's death: %v", took)
	send(nodes[2], 5)
	waitCond(t, "every acknowledged message readable", 20*time.Second, func() bool {
		n, err := popCount(nodes[1].addr("pop3s"), "ha@example.test", "pw")
		return err == nil && n == len(acked)
	})
	// The killed node comes back, rejoins as a follower and fetches what it missed.
	nodes[0] = startServer(t, dirs[0], args(0)...)
	waitCond(t, "restarted node holds every blob", 30*time.Second, func() bool {
		want := blobSums(t, dirs[1])
		got := blobSums(t, dirs[0])
		for s := range want {
			if !got[s] {
				return false
			}
		}
		return len(want) > 0
	})
	var cs struct {
		Members []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
			Lag  uint64 `json:"lag"`
		} `json:"members"`
	}
	waitCond(t, "status shows three healthy members", 20*time.Second, func() bool {
		out, err := nodes[0].cli("cluster", "status", "--json")
		if err != nil || json.Unmarshal([]byte(out), &cs) != nil {
			return false
		}
		leaders := 0
		for _, m := range cs.Members {
			if m.Role == "Leader" {
				leaders++
			}
		}
		return len(cs.Members) == 3 && leaders == 1
	})
}
