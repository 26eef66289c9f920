package hatest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

var tandemBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-ha-bin-")
	if err != nil {
		panic(err)
	}
	tandemBin = filepath.Join(dir, "tandem")
	if Available() == nil {
		build := exec.Command("go", "build", "-o", tandemBin, "github.com/tandemmail/tandem/cmd/tandem")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build tandem:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	vip4 = "10.77.0.100"
	vip6 = "fd77::100"
)

// cluster is tandem running in namespaces.
type cluster struct {
	t      *testing.T
	net    *Net
	nodes  map[string]*proc
	secret string
	first  string
}

type proc struct {
	name, data string
	cmd        *exec.Cmd
	exited     chan struct{}
	out        *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newCluster(t *testing.T, hosts ...string) *cluster {
	n := New(t, append(hosts, "client")...)
	return &cluster{t: t, net: n, nodes: map[string]*proc{}}
}

func (c *cluster) clusterAddr(host string) string { return c.net.Hosts[host].V4 + ":7400" }

// start runs a node (or a witness) in its namespace; the first started
// node bootstraps the cluster, the others join it.
func (c *cluster) start(host string, witness bool) *proc {
	c.t.Helper()
	p := c.nodes[host]
	if p == nil {
		p = &proc{name: host, data: c.t.TempDir()}
		c.nodes[host] = p
	}
	args := []string{"serve", "--data", p.data, "--node-id", host, "--domain", "example.test", "--hostname", host + ".example.test",
		"--cluster-addr", c.clusterAddr(host), "--gossip-addr", c.net.Hosts[host].V4 + ":7401"}
	if witness {
		args[0] = "witness"
	} else {
		args = append(args, "--vip", vip4+"/24", "--vip6", vip6+"/64", "--vip-iface", "eth0",
			"--smtp-addr", ":25", "--submission-addr", "", "--submissions-addr", "", "--imap-addr", ":143",
			"--imaps-addr", "", "--pop3-addr", "", "--pop3s-addr", ":995", "--http-addr", ":8080")
	}
	if c.first == "" {
		c.first = host
	} else if c.first != host {
		args = append(args, "--join", c.clusterAddr(c.first), "--cluster-secret", c.secret)
	}
	p.out = &syncBuf{}
	p.cmd = c.net.Command(host, tandemBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.exited = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func(p *proc, done chan struct{}) {
		p.cmd.Wait()
		close(done)
	}(p, p.exited)
	c.t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.out.String(), "Stop it with") && !strings.Contains(p.out.String(), "tandem started") {
		select {
		case <-p.exited:
			c.t.Fatalf("%s exited at start:\n%s", host, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not start:\n%s", host, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.secret == "" {
		b, err := os.ReadFile(filepath.Join(p.data, "cluster-secret"))
		if err != nil {
			c.t.Fatal(err)
		}
		c.secret = strings.TrimSpace(string(b))
	}
	return p
}

func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	// ip netns exec runs the binary directly (exec), so this is tandem.
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

func (c *cluster) cli(host string, args ...string) (string, error) {
	out, err := exec.Command(tandemBin, append([]string{"--data", c.nodes[host].data}, args...)...).CombinedOutput()
	return string(out), err
}

// vipHolders lists the namespaces that carry the VIP now.
func (c *cluster) vipHolders() []string {
	var out []string
	for h := range c.nodes {
		if c.net.HasAddr(h, vip4) {
			out = append(out, h)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// sendVia delivers one message from the client namespace to addr.
func (c *cluster) send(addr, rcpt, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := c.net.Dial(ctx, "client", addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cl := smtp.NewClient(conn)
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		return err
	}
	body := fmt.Sprintf("From: load@client.test\r\nTo: %s\r\nSubject: ha\r\nMessage-ID: %s\r\n\r\nfailover test\r\n", rcpt, id)
	if err := cl.SendMail("load@client.test", []string{rcpt}, strings.NewReader(body)); err != nil {
		return err
	}
	return cl.Quit()
}

// load sends continuously over several connections until stop, recording
// every acknowledged Message-ID.
type load struct {
	mu     sync.Mutex
	acked  map[string]bool
	errs   int
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func (c *cluster) startLoad(conns int, rcpt string) *load {
	l := &load{acked: map[string]bool{}, stopCh: make(chan struct{})}
	for i := 0; i < conns; i++ {
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-l.stopCh:
					return
				default:
				}
				id := fmt.Sprintf("<ha-%d-%d-%d@client.test>", time.Now().UnixNano(), i, k)
				if err := c.send(net.JoinHostPort(vip4, "25"), rcpt, id); err != nil {
					l.mu.Lock()
					l.errs++
					l.mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.acked[id] = true
				l.mu.Unlock()
			}
		}(i)
	}
	return l
}

func (l *load) stop() map[string]bool {
	close(l.stopCh)
	l.wg.Wait()
	return l.acked
}

// messageIDs reads every Message-ID in the mailbox over POP3 (TLS)
// through addr from the client namespace.
func (c *cluster) messageIDs(addr, user, pw string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := c.net.Dial(ctx, "client", addr)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	defer conn.Close()
	r := bufio.NewReader(conn)
	cmd := func(line string) (string, error) {
		if line != "" {
			if _, err := io.WriteString(conn, line+"\r\n"); err != nil {
				return "", err
			}
		}
		l, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, "+OK") {
			return l, fmt.Errorf("pop3 %q: %s", line, strings.TrimSpace(l))
		}
		return l, nil
	}
	if _, err := cmd(""); err != nil {
		return nil, err
	}
	if _, err := cmd("USER " + user); err != nil {
		return nil, err
	}
	if _, err := cmd("PASS " + pw); err != nil {
		return nil, err
	}
	st, err := cmd("STAT")
	if err != nil {
		return nil, err
	}
	var n int
	fmt.Sscanf(st, "+OK %d", &n)
	out := map[string]int{}
	for i := 1; i <= n; i++ {
		if _, err := cmd(fmt.Sprintf("TOP %d 0", i)); err != nil {
			return nil, err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			l = strings.TrimRight(l, "\r\n")
			if l == "." {
				break
			}
			if v, ok := strings.CutPrefix(l, "Message-ID: "); ok {
				out[v]++
			}
		}
	}
	cmd("QUIT")
	return out, nil
}

// imapMessageIDs reads every Message-ID in INBOX over IMAP (STARTTLS)
// through addr from the client namespace, and checks UIDs strictly rise.
func (c *cluster) imapMessageIDs(addr, user, pw string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := c.net.Dial(ctx, "client", addr)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	cl, err := imapclient.NewStartTLS(raw, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		raw.Close()
		return nil, err
	}
	defer cl.Close()
	if err := cl.Login(user, pw).Wait(); err != nil {
		return nil, err
	}
	sel, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	if sel.NumMessages == 0 {
		return out, nil
	}
	var ss imap.SeqSet
	ss.AddRange(1, sel.NumMessages)
	msgs, err := cl.Fetch(ss, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	var last imap.UID
	for _, m := range msgs {
		if m.UID <= last {
			return nil, fmt.Errorf("UID %d after %d: not strictly increasing", m.UID, last)
		}
		last = m.UID
		out["<"+m.Envelope.MessageID+">"]++
	}
	return out, nil
}

func (c *cluster) checkAcked(t *testing.T, acked map[string]bool) {
	t.Helper()
	var found map[string]int
	var err error
	waitFor(t, "read the mailbox through the VIP", 30*time.Second, func() bool {
		found, err = c.imapMessageIDs(net.JoinHostPort(vip4, "143"), "ha@example.test", "pw")
		if err != nil {
			return false
		}
		for id := range acked {
			if found[id] != 1 {
				return false
			}
		}
		return true
	})
	lost, dup := 0, 0
	for id := range acked {
		switch {
		case found[id] == 0:
			lost++
		case found[id] > 1:
			dup++
		}
	}
	if lost > 0 || dup > 0 {
		t.Fatalf("%d acknowledged messages: %d lost, %d duplicated", len(acked), lost, dup)
	}
	t.Logf("all %d acknowledged messages present exactly once", len(acked))
}

func blobSet(t *testing.T, data string) map[string]bool {
	out := map[string]bool{}
	filepath.Walk(filepath.Join(data, "blobs"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".eml") || filepath.Base(filepath.Dir(p)) == "tmp" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:])+".eml" != filepath.Base(p) {
			t.Errorf("blob %s fails its checksum", p)
		}
		out[filepath.Base(p)] = true
		return nil
	})
	return out
}

func leaderOf(c *cluster, via string) string {
	out, err := c.cli(via, "cluster", "status", "--json")
	if err != nil {
		return ""
	}
	i := strings.Index(out, `"leader": "`)
	if i < 0 {
		return ""
	}
	rest := out[i+len(`"leader": "`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// watchVIP asserts, for the whole test, that no two nodes ever hold the
// VIP at once (sampled every 10 ms).
func (c *cluster) watchVIP(t *testing.T) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if h := c.vipHolders(); len(h) > 1 {
				t.Errorf("two nodes hold the VIP at once: %v", h)
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
}

func threeNodes(t *testing.T) *cluster {
	c := newCluster(t, "n1", "n2", "n3")
	c.start("n1", false)
	c.start("n2", false)
	c.start("n3", false)
	if out, err := c.cli("n1", "account", "add", "ha@example.test", "--password", "pw"); err != nil {
		t.Fatalf("add account: %v\n%s", err, out)
	}
	waitFor(t, "the leader holds the VIP", 15*time.Second, func() bool {
		h := c.vipHolders()
		return len(h) == 1 && h[0] == "n1"
	})
	c.watchVIP(t)
	return c
}

// Leader killed with SIGKILL while the client sends through the VIP.
func TestLeaderKilledUnderLoad(t *testing.T) {
	c := threeNodes(t)
	l := c.startLoad(4, "ha@example.test")
	time.Sleep(2 * time.Second)
	killed := time.Now()
	c.nodes["n1"].kill()
	took := waitFor(t, "the VIP on exactly one live node", 10*time.Second, func() bool {
		h := c.vipHolders()
		return len(h) == 1 && h[0] != "n1"
	})
	t.Logf("VIP moved %v after the kill", took)
	var first time.Duration
	waitFor(t, "SMTP answers on the VIP", 10*time.Second, func() bool {
		err := c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", fmt.Sprintf("<probe-%d@client.test>", time.Now().UnixNano()))
		if err == nil {
			first = time.Since(killed)
		}
		return err == nil
	})
	t.Logf("first 250 on the VIP %v after the kill", first)
	time.Sleep(2 * time.Second)
	acked := l.stop()
	c.checkAcked(t, acked)
	// The killed node comes back as a follower and holds every blob.
	c.start("n1", false)
	holder := c.vipHolders()[0]
	waitFor(t, "n1 has every blob again", 60*time.Second, func() bool {
		want, got := blobSet(t, c.nodes[holder].data), blobSet(t, c.nodes["n1"].data)
		if len(want) < len(acked) {
			t.Fatalf("%s holds %d blobs for %d messages", holder, len(want), len(acked))
		}
		for b := range want {
			if !got[b] {
				return false
			}
		}
		return true
	})
	if h := c.vipHolders(); len(h) != 1 || h[0] != holder {
		t.Fatalf("VIP holders after rejoin: %v (no preemption expected)", h)
	}
}

// Leader cut off: it drops the VIP within its lease, the majority moves on,
// and after healing the old leader rejoins as a follower.
func TestLeaderPartitioned(t *testing.T) {
	c := threeNodes(t)
	// Let the client know the VIP's MAC first.
	c.net.Command("client", "ping", "-c1", "-W1", vip4).Run()
	l := c.startLoad(3, "ha@example.test")
	time.Sleep(2 * time.Second)
	c.net.LinkDown("n1")
	cut := time.Now()
	dropped := waitFor(t, "the cut-off leader drops the VIP", 5*time.Second, func() bool { return !c.net.HasAddr("n1", vip4) })
	t.Logf("old leader dropped the VIP %v after the cut", dropped)
	waitFor(t, "the majority takes the VIP", 10*time.Second, func() bool {
		h := c.vipHolders()
		return len(h) == 1 && h[0] != "n1"
	})
	newHolder := c.vipHolders()[0]
	t.Logf("%s holds the VIP %v after the cut", newHolder, time.Since(cut))
	waitFor(t, "the client's neighbour entry follows the VIP", 5*time.Second, func() bool {
		c.net.Command("client", "ping", "-c1", "-W1", vip4).Run()
		return c.net.Neighbour("client", vip4) == c.net.MAC(newHolder)
	})
	time.Sleep(time.Second)
	c.net.LinkUp("n1")
	waitFor(t, "n1 rejoins as a follower", 20*time.Second, func() bool {
		out, err := c.cli("n1", "cluster", "status", "--json")
		return err == nil && strings.Contains(out, `"leader": "`+newHolder+`"`)
	})
	if h := c.vipHolders(); len(h) != 1 || h[0] != newHolder {
		t.Fatalf("VIP holders after healing: %v", h)
	}
	// The status page on every node shows the failover and the VIP holder.
	for _, h := range []string{"n1", "n2", "n3"} {
		page, err := c.httpGet("http://" + c.net.Hosts[h].V4 + ":8080/cluster")
		if err != nil || !strings.Contains(page, "held by <strong>"+newHolder) || !strings.Contains(page, "election") {
			t.Errorf("status page on %s: %v\n%s", h, err, page)
		}
	}
	c.checkAcked(t, l.stop())
}

// httpGet fetches a page from the client namespace.
func (c *cluster) httpGet(url string) (string, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return c.net.Dial(ctx, "client", addr) },
	}}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
