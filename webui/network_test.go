package webui

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/hardware"
	"github.com/vishvananda/netns"
)

// fakeNet records what the API asks of the address manager.
type fakeNet struct {
	applied []hardware.AddrChange
	pending *hardware.PendingChange
}

func (f *fakeNet) Interfaces(context.Context) ([]hardware.Interface, error) {
	return []hardware.Interface{{Name: "eth0", Up: true, Addrs: []hardware.InterfaceAddr{{CIDR: "192.0.2.10/24", Scope: "global", Managed: true}}}}, nil
}

func (f *fakeNet) Apply(_ context.Context, c hardware.AddrChange) (hardware.PendingChange, error) {
	if f.pending != nil {
		return hardware.PendingChange{}, hardware.ErrChangePending
	}
	f.applied = append(f.applied, c)
	f.pending = &hardware.PendingChange{ID: "abc123", Interface: c.Interface, Deadline: time.Now().Add(c.Rollback)}
	return *f.pending, nil
}

func (f *fakeNet) Confirm(id string) error {
	if f.pending == nil || f.pending.ID != id {
		return hardware.ErrNoPendingChange
	}
	f.pending = nil
	return nil
}

func (f *fakeNet) RollbackNow(id string) error { return f.Confirm(id) }

func (f *fakeNet) Pending() (hardware.PendingChange, bool) {
	if f.pending == nil {
		return hardware.PendingChange{}, false
	}
	return *f.pending, true
}

func TestNetworkAPI(t *testing.T) {
	fn := &fakeNet{}
	srv, _ := w2Server(t, func(c *APIConfig) { c.Network = fn })

	code, body := call(t, srv, "GET", "/api/network/interfaces", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"192.0.2.10/24"`) || !strings.Contains(string(body), `"pending": null`) {
		t.Fatalf("interfaces: %d %s", code, body)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"interface":"eth0","addrs":["300.1.1.1/24"]}`, "CIDR"},
		{`{"interface":"eth0","addrs":["127.0.0.5/8"]}`, "loopback"},
		{`{"interface":"eth0; reboot","addrs":["192.0.2.5/24"]}`, "not an interface name"},
		{`{"interface":"eth0","addrs":["192.0.2.5/24"],"rollback_seconds":5}`, "rollback"},
		{`{"interface":"eth0","addrs":["192.0.2.5/24"],"rollback_seconds":99999}`, "rollback_seconds"},
		{`{"interface":"eth0","addrs":["192.0.2.5/24"],"gateway4":"10.0.0.1"}`, "not inside"},
	} {
		code, body := call(t, srv, "POST", "/api/network/apply", bad.body)
		if code != http.StatusBadRequest || !strings.Contains(errorOf(t, body), bad.want) {
			t.Errorf("%s: %d %s", bad.body, code, body)
		}
	}
	if len(fn.applied) != 0 {
		t.Fatalf("invalid changes reached the manager: %+v", fn.applied)
	}
	code, body = call(t, srv, "POST", "/api/network/apply", `{"interface":"eth0","addrs":["192.0.2.5/24","2001:db8::5/64"],"gateway4":"192.0.2.1","rollback_seconds":60}`)
	if code != http.StatusAccepted {
		t.Fatalf("apply: %d %s", code, body)
	}
	var resp struct {
		ID       string    `json:"id"`
		Deadline time.Time `json:"deadline"`
		Confirm  string    `json:"confirm"`
	}
	json.Unmarshal(body, &resp)
	if resp.ID != "abc123" || resp.Confirm != "/api/network/confirm/abc123" || time.Until(resp.Deadline) < 50*time.Second {
		t.Fatalf("apply answer %s", body)
	}
	if c := fn.applied[0]; c.Rollback != time.Minute || c.Gateway4 != "192.0.2.1" || len(c.Addrs) != 2 {
		t.Fatalf("manager got %+v", c)
	}
	if code, body := call(t, srv, "POST", "/api/network/apply", `{"interface":"eth0","addrs":["192.0.2.6/24"]}`); code != http.StatusConflict {
		t.Fatalf("second apply: %d %s", code, body)
	}
	if code, _ := call(t, srv, "POST", "/api/network/confirm/nope", nil); code != http.StatusNotFound {
		t.Fatalf("confirm unknown id: %d", code)
	}
	if code, body := call(t, srv, "POST", "/api/network/confirm/abc123", nil); code != http.StatusOK {
		t.Fatalf("confirm: %d %s", code, body)
	}

	// Without a manager the routes say why.
	srv2, _ := w2Server(t, nil)
	if code, body := call(t, srv2, "GET", "/api/network/interfaces", nil); code != http.StatusServiceUnavailable || !strings.Contains(errorOf(t, body), "not available") {
		t.Fatalf("no manager: %d %s", code, body)
	}
}

func TestGlobalAdminOnly(t *testing.T) {
	srv, _ := w2Server(t, func(c *APIConfig) {
		c.GlobalAdmin = func(r *http.Request) bool { return r.Header.Get("X-Test-Admin") == "global" }
	})
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/network/interfaces"}, {"POST", "/api/network/apply"}, {"PUT", "/api/network/remote"},
		{"POST", "/api/tools/ping"}, {"GET", "/api/settings/export"}, {"POST", "/api/settings/import"},
		{"GET", "/api/certificates"}, {"PUT", "/api/certificates"}, {"DELETE", "/api/certificates"},
	} {
		code, body := call(t, srv, r.method, r.path, "{}")
		if code != http.StatusForbidden || !strings.Contains(errorOf(t, body), "global administrator") {
			t.Errorf("%s %s as a domain admin: %d %s", r.method, r.path, code, body)
		}
	}
}

func TestRemoteSettings(t *testing.T) {
	srv, st := w2Server(t, nil)
	code, body := call(t, srv, "GET", "/api/network/remote", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"saved": false`) || !strings.Contains(string(body), `"ping": true`) {
		t.Fatalf("defaults: %d %s", code, body)
	}
	if code, body := call(t, srv, "PUT", "/api/network/remote", `{}`); code != http.StatusBadRequest {
		t.Fatalf("empty change: %d %s", code, body)
	}
	if code, body := call(t, srv, "PUT", "/api/network/remote", `{"ping":"no"}`); code != http.StatusBadRequest {
		t.Fatalf("bad type: %d %s", code, body)
	}
	if code, body := call(t, srv, "PUT", "/api/network/remote", `{"ping":false,"http":false}`); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	s, saved, err := LoadRemoteSettings(st)
	if err != nil || !saved || s != (RemoteSettings{Ping: false, HTTP: false, HTTPSAdmin: true}) {
		t.Fatalf("stored %+v %v %v", s, saved, err)
	}

	// RemoteAdminAllowed: loopback and the unix socket always; others by
	// scheme.
	a := NewAPI(APIConfig{Store: st, Status: func() any { return nil }})
	req := func(remote string, tlsOn bool) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		return r
	}
	for _, c := range []struct {
		remote string
		tls    bool
		want   bool
	}{
		{"127.0.0.1:5000", false, true}, {"[::1]:5000", false, true}, {"@", false, true},
		{"192.0.2.9:5000", false, false}, {"192.0.2.9:5000", true, true}, {"[2001:db8::9]:5000", false, false},
	} {
		if got := a.RemoteAdminAllowed(req(c.remote, c.tls)); got != c.want {
			t.Errorf("RemoteAdminAllowed(%s, tls=%v) = %v", c.remote, c.tls, got)
		}
	}

	// The ping switch writes the kernel files (here a fake /proc/sys/net).
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ipv4"), 0o755)
	os.MkdirAll(filepath.Join(dir, "ipv6", "icmp"), 0o755)
	os.WriteFile(filepath.Join(dir, "ipv4", "icmp_echo_ignore_all"), []byte("0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ipv6", "icmp", "echo_ignore_all"), []byte("0\n"), 0o644)
	ps := &PingSwitch{KV: st, ProcSysNet: dir, Every: 20 * time.Millisecond}
	stop := ps.Start()
	defer stop()
	waitFile := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			v4, _ := os.ReadFile(filepath.Join(dir, "ipv4", "icmp_echo_ignore_all"))
			v6, _ := os.ReadFile(filepath.Join(dir, "ipv6", "icmp", "echo_ignore_all"))
			if strings.TrimSpace(string(v4)) == want && strings.TrimSpace(string(v6)) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("sysctl files %q %q, want %q", v4, v6, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFile("1") // ping off: ignore echo requests
	if code, body := call(t, srv, "PUT", "/api/network/remote", `{"ping":true}`); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	waitFile("0")
}

func TestPingSwitchUntouchedWhenNeverSaved(t *testing.T) {
	_, st := w2Server(t, nil)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ipv4"), 0o755)
	f := filepath.Join(dir, "ipv4", "icmp_echo_ignore_all")
	os.WriteFile(f, []byte("1\n"), 0o644)
	if err := (&PingSwitch{KV: st, ProcSysNet: dir}).Apply(); err != nil {
		t.Fatal(err)
	}
	if v, _ := os.ReadFile(f); string(v) != "1\n" {
		t.Fatalf("file changed to %q without a saved setting", v)
	}
}

// TestPingSwitchInNetns applies the switch to a real kernel inside a
// network namespace the test makes (never the host's): a peer namespace
// pings it over a veth pair, and the answers stop and come back.
func TestPingSwitchInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tests need iproute2's ip:", err)
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (iputils-ping):", err)
	}
	box := fmt.Sprintf("tdping%d-box", os.Getpid())
	peer := fmt.Sprintf("tdping%d-peer", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{box, peer} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("ip netns unavailable: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip("-n", box, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer)
	ip("-n", box, "addr", "add", "10.66.0.2/24", "dev", "eth0")
	ip("-n", peer, "addr", "add", "10.66.0.1/24", "dev", "eth0")
	ip("-n", box, "link", "set", "eth0", "up")
	ip("-n", peer, "link", "set", "eth0", "up")
	answered := func() bool {
		return exec.Command("ip", "netns", "exec", peer, "ping", "-c", "1", "-W", "1", "10.66.0.2").Run() == nil
	}
	// applyIn runs the switch on a thread inside the box namespace, where
	// /proc/sys/net is the namespace's own.
	applyIn := func(ps *PingSwitch) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // not unlocked: the thread is dropped with the goroutine
			h, err := netns.GetFromName(box)
			if err != nil {
				errc <- err
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				errc <- err
				return
			}
			errc <- ps.Apply()
		}()
		return <-errc
	}
	_, st := w2Server(t, nil)
	ps := &PingSwitch{KV: st, ProcSysNet: "/proc/sys/net"}
	if !answered() {
		t.Fatal("the box namespace does not answer pings to begin with")
	}
	put := func(on bool) {
		raw, _ := json.Marshal(RemoteSettings{Ping: on, HTTP: true, HTTPSAdmin: true})
		if err := st.KVPutValue(context.Background(), RemoteNamespace, RemoteKey, raw); err != nil {
			t.Fatal(err)
		}
		if err := applyIn(ps); err != nil {
			t.Fatal(err)
		}
	}
	put(false)
	if answered() {
		t.Fatal("pings still answered with the switch off")
	}
	put(true)
	if !answered() {
		t.Fatal("pings not answered with the switch on again")
	}
}

// TestNetworkAPIInNetns drives a real address manager through the API
// inside a namespace the test makes: the JSON the wizard reads, an apply
// that is confirmed, and one that is undone.
func TestNetworkAPIInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tests need iproute2's ip:", err)
	}
	ns := fmt.Sprintf("tdnetapi%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "peer0"},
		{"link", "set", "eth0", "up"}, {"link", "set", "peer0", "up"},
		{"addr", "add", "10.55.0.2/24", "dev", "eth0"},
		{"route", "add", "default", "via", "10.55.0.1"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	am, err := hardware.NewAddrManager(hardware.AddrManagerConfig{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	srv, _ := w2Server(t, func(c *APIConfig) { c.Network = am })

	type ifaces struct {
		Interfaces []hardware.Interface    `json:"interfaces"`
		Pending    *hardware.PendingChange `json:"pending"`
	}
	get := func() (ifaces, hardware.Interface) {
		t.Helper()
		code, body := call(t, srv, "GET", "/api/network/interfaces", nil)
		var d ifaces
		if code != http.StatusOK || json.Unmarshal(body, &d) != nil {
			t.Fatalf("interfaces: %d %s", code, body)
		}
		for _, i := range d.Interfaces {
			if i.Name == "eth0" {
				return d, i
			}
		}
		t.Fatalf("no eth0: %s", body)
		return d, hardware.Interface{}
	}
	_, eth := get()
	if got := eth.SortedCIDRs(); len(got) != 1 || got[0] != "10.55.0.2/24" || eth.Gateway4 != "10.55.0.1" {
		t.Fatalf("start: %v %q", got, eth.Gateway4)
	}
	code, body := call(t, srv, "POST", "/api/network/apply", `{"interface":"eth0","addrs":["10.56.0.2/24","fd56::2/64"],"gateway4":"10.56.0.1"}`)
	if code != http.StatusAccepted {
		t.Fatalf("apply: %d %s", code, body)
	}
	var ap struct{ ID string }
	json.Unmarshal(body, &ap)
	d, eth := get()
	if d.Pending == nil || d.Pending.ID != ap.ID || eth.Gateway4 != "10.56.0.1" || len(eth.SortedCIDRs()) != 2 {
		t.Fatalf("after apply: %+v %+v", d.Pending, eth)
	}
	if code, body := call(t, srv, "POST", "/api/network/confirm/"+ap.ID, nil); code != http.StatusOK {
		t.Fatalf("confirm: %d %s", code, body)
	}
	code, body = call(t, srv, "POST", "/api/network/apply", `{"interface":"eth0","addrs":["10.57.0.2/24"],"gateway4":"10.57.0.1"}`)
	if code != http.StatusAccepted {
		t.Fatalf("second apply: %d %s", code, body)
	}
	json.Unmarshal(body, &ap)
	if code, body := call(t, srv, "POST", "/api/network/rollback/"+ap.ID, nil); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	d, eth = get()
	if got := eth.SortedCIDRs(); d.Pending != nil || len(got) != 2 || got[0] != "10.56.0.2/24" || eth.Gateway4 != "10.56.0.1" {
		t.Fatalf("after undo: %v gw %q pending %+v", got, eth.Gateway4, d.Pending)
	}
	if code, _ := call(t, srv, "POST", "/api/network/apply", `{"interface":"nosuch9","addrs":["10.58.0.2/24"]}`); code != http.StatusBadRequest {
		t.Fatalf("missing interface: %d", code)
	}
}
