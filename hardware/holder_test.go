package hardware

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// holder is a child process holding the address (TestHolderProcess).
type holder struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr syncBuffer
	once   sync.Once
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startHolder runs this test binary's TestHolderProcess inside namespace ns
// and waits until it holds the address.
func startHolder(t *testing.T, ns string) *holder {
	t.Helper()
	h := &holder{lines: make(chan string, 16)}
	// ip netns exec switches namespace and execs: the child's pid is the
	// holder's own.
	h.cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHolderProcess$", "-test.count=1")
	h.cmd.Env = append(os.Environ(), "TANDEM_HW_HOLDER=1")
	h.cmd.Stderr = &h.stderr
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		h.kill(t)
		if t.Failed() {
			t.Logf("holder's log:\n%s", h.stderr.String())
		}
	})
	h.expect(t, "held", 10*time.Second)
	return h
}

func (h *holder) expect(t *testing.T, want string, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("holder exited before saying %q:\n%s", want, h.stderr.String())
			}
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("holder did not say %q within %v", want, within)
		}
	}
}

func (h *holder) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (h *holder) kill(t *testing.T) {
	h.once.Do(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
	})
}

// subscribeAddrs reports address changes in host's namespace until the
// test ends.
func subscribeAddrs(t *testing.T, host *testHost) chan netlink.AddrUpdate {
	t.Helper()
	updates := make(chan netlink.AddrUpdate, 1000)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	ns := host.ns
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	return updates
}

// A holder that hangs (SIGSTOP) loses the address when its lifetime runs
// out, and does not take it back when it wakes up; one that is killed
// loses it the same way. The holder is this test binary in a child
// process, started in the namespace with `ip netns exec` (so it uses the
// Netns "" path).
func TestKernelHungOrKilledHolder(t *testing.T) {
	t.Parallel()
	n := newTestNet(t, "a", "c")
	v4, v6 := vipIPs(t)
	const lifetime = time.Second
	gone := func() bool { return !n.has("a", v4) && !n.has("a", v6) }
	waitGone := func(what string, from time.Time) time.Duration {
		t.Helper()
		for !gone() {
			if time.Since(from) > lifetime+time.Second {
				t.Fatalf("%s: address still there %v later, want the kernel to expire it within lifetime + 1 s", what, time.Since(from))
			}
			time.Sleep(10 * time.Millisecond)
		}
		d := time.Since(from)
		// The last renewal was at most a quarter lifetime before.
		if d < lifetime/2 {
			t.Errorf("%s: gone after %v, before its lifetime could run out: removed by someone else?", what, d)
		}
		return d
	}

	h := startHolder(t, n.hosts["a"].name)
	if !n.has("a", v4) || !n.has("a", v6) {
		t.Fatal("holder says held but the address is not there")
	}
	updates := subscribeAddrs(t, n.hosts["a"])
	h.signal(t, unix.SIGSTOP)
	stopped := time.Now()
	t.Logf("hung holder: address expired %v after the stop", waitGone("hung holder", stopped).Round(time.Millisecond))
	cap := n.capture(t, "c")
	woke := time.Now()
	h.signal(t, unix.SIGCONT)
	h.expect(t, "lost", 2*time.Second)
	time.Sleep(lifetime)
	if !gone() {
		t.Fatal("holder put the address back after waking up")
	}
	mac := n.hosts["a"].mac
	if late := append(cap.from(mac, "arp", woke), cap.from(mac, "na", woke)...); len(late) > 0 {
		t.Errorf("holder announced the address after waking up without it: %v", late)
	}
	// The subscription also saw the renewals before the stop: an add
	// after the kernel's delete is what must not be there.
	deleted := map[string]bool{}
	for len(updates) > 0 {
		u := <-updates
		ip := u.LinkAddress.IP
		if !ip.Equal(v4) && !ip.Equal(v6) {
			continue
		}
		if !u.NewAddr {
			deleted[ip.String()] = true
		} else if deleted[ip.String()] {
			t.Fatalf("%s re-added after the holder woke up: %+v", ip, u)
		}
	}
	if !deleted[v4.String()] || !deleted[v6.String()] {
		t.Fatalf("deletes seen: %v", deleted)
	}
	h.kill(t)

	h = startHolder(t, n.hosts["a"].name)
	h.kill(t)
	killed := time.Now()
	t.Logf("killed holder: address expired %v after the kill", waitGone("killed holder", killed).Round(time.Millisecond))
}

// TestHolderProcess is the child of TestKernelHungOrKilledHolder: it takes
// the address, reports "held", then "lost" when the lease ends.
func TestHolderProcess(t *testing.T) {
	if os.Getenv("TANDEM_HW_HOLDER") == "" {
		t.Skip("child process of TestKernelHungOrKilledHolder")
	}
	cfg, err := ParseVIP(testVIP4, testVIP6, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Lifetime = time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("held\n")
	for l.Held() {
		time.Sleep(20 * time.Millisecond)
	}
	os.Stdout.WriteString("lost\n")
	select {} // until killed
}
