package webui

// The box's network settings (SPEC M1 step 1, W1 remote management):
//
//	GET  /api/network/interfaces      interfaces, addresses, gateways, a pending change
//	POST /api/network/apply           new address set; rolled back unless confirmed
//	POST /api/network/confirm/{id}    keep the change
//	POST /api/network/rollback/{id}   undo the change now
//	GET  /api/network/remote          remote management switches
//	PUT  /api/network/remote          change them
//
// KV namespace owned here: "web.remote", key "settings": RemoteSettings as
// JSON. An absent key means everything on (a fresh box must be reachable);
// a node only touches the kernel's ping setting once an admin has saved
// the switches.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/hardware"
	"github.com/tandemmail/tandem/storage"
)

// NetworkConfigurer changes the box's interface addresses with a
// confirm-or-roll-back timer (hardware.AddrManager).
type NetworkConfigurer interface {
	Interfaces(ctx context.Context) ([]hardware.Interface, error)
	Apply(ctx context.Context, c hardware.AddrChange) (hardware.PendingChange, error)
	Confirm(id string) error
	RollbackNow(id string) error
	Pending() (hardware.PendingChange, bool)
}

// KV home of the remote-management switches.
const (
	RemoteNamespace = "web.remote"
	RemoteKey       = "settings"
)

// RemoteSettings are the remote-management switches (SPEC W1).
type RemoteSettings struct {
	// Ping: the box answers ICMP echo requests (IPv4 and IPv6).
	Ping bool `json:"ping"`
	// HTTP and HTTPSAdmin: the admin pages and API answer over plain HTTP
	// and HTTPS from other hosts (loopback always may).
	HTTP       bool `json:"http"`
	HTTPSAdmin bool `json:"https_admin"`
}

// DefaultRemoteSettings: all on.
var DefaultRemoteSettings = RemoteSettings{Ping: true, HTTP: true, HTTPSAdmin: true}

// KVReader is the read side of the replicated KV store.
type KVReader interface {
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVRevision(ns string) uint64
}

// LoadRemoteSettings reads the switches; saved is false when no admin has
// set them yet (the defaults apply).
func LoadRemoteSettings(kv KVReader) (s RemoteSettings, saved bool, err error) {
	raw, _, ok, err := kv.KVGet(RemoteNamespace, RemoteKey)
	if err != nil {
		return DefaultRemoteSettings, false, err
	}
	if !ok {
		return DefaultRemoteSettings, false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return DefaultRemoteSettings, false, fmt.Errorf("%s/%s: %w", RemoteNamespace, RemoteKey, err)
	}
	return s, true, nil
}

// RemoteAdminAllowed reports whether the admin pages and API may answer
// this request under the remote-management switches: always from loopback
// and the unix socket, else only when the switch of the request's scheme
// (HTTP or HTTPS) is on. The web layer answers 403 when it is false.
func (a *API) RemoteAdminAllowed(r *http.Request) bool {
	s, _, err := LoadRemoteSettings(a.cfg.Store)
	if err != nil {
		a.cfg.Logger.Warn("remote management settings unreadable; using defaults", "err", err)
	}
	return remoteAdminAllowed(s, r)
}

func remoteAdminAllowed(s RemoteSettings, r *http.Request) bool {
	if isLocalRequest(r) {
		return true
	}
	if r.TLS != nil {
		return s.HTTPSAdmin
	}
	return s.HTTP
}

// isLocalRequest: from loopback, or over the unix socket (whose remote
// address is "@" or empty).
func isLocalRequest(r *http.Request) bool {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// globalAdminOnly guards the routes of this file and of settings, tools and
// certificates: they change the whole box, so a domain admin gets 403.
// Over the unix socket (root-only) every request is the global admin; the
// web layer's session check puts the principal in the request context.
func (a *API) globalAdminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.GlobalAdmin != nil && !a.cfg.GlobalAdmin(r) {
			writeError(w, http.StatusForbidden, errors.New("only a global administrator may do this"))
			return
		}
		h(w, r)
	}
}

func (a *API) routesNetwork() {
	m := a.mux
	m.HandleFunc("GET /api/network/interfaces", a.globalAdminOnly(a.netInterfaces))
	m.HandleFunc("POST /api/network/apply", a.globalAdminOnly(a.netApply))
	m.HandleFunc("POST /api/network/confirm/{id}", a.globalAdminOnly(a.netConfirm))
	m.HandleFunc("POST /api/network/rollback/{id}", a.globalAdminOnly(a.netRollback))
	m.HandleFunc("GET /api/network/remote", a.globalAdminOnly(a.getRemote))
	m.HandleFunc("PUT /api/network/remote", a.globalAdminOnly(a.putRemote))
}

func (a *API) network(w http.ResponseWriter) NetworkConfigurer {
	if a.cfg.Network == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("interface configuration is not available on this node (netlink could not be opened)"))
	}
	return a.cfg.Network
}

func (a *API) netInterfaces(w http.ResponseWriter, r *http.Request) {
	nc := a.network(w)
	if nc == nil {
		return
	}
	ifs, err := nc.Interfaces(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	resp := map[string]any{"interfaces": ifs, "pending": nil}
	if p, ok := nc.Pending(); ok {
		resp["pending"] = p
	}
	writeJSON(w, http.StatusOK, resp)
}

// NetworkApplyRequest is the body of POST /api/network/apply.
type NetworkApplyRequest struct {
	Interface string   `json:"interface"`
	Addrs     []string `json:"addrs"`
	Gateway4  string   `json:"gateway4,omitempty"`
	Gateway6  string   `json:"gateway6,omitempty"`
	// RollbackSeconds is the time to confirm (0: 120).
	RollbackSeconds int `json:"rollback_seconds,omitempty"`
}

func (a *API) netApply(w http.ResponseWriter, r *http.Request) {
	nc := a.network(w)
	if nc == nil {
		return
	}
	var req NetworkApplyRequest
	if !decode(w, r, &req) {
		return
	}
	if req.RollbackSeconds < 0 || req.RollbackSeconds > int(hardware.MaxRollback/time.Second) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rollback_seconds %d: must be between %d and %d",
			req.RollbackSeconds, int(hardware.MinRollback/time.Second), int(hardware.MaxRollback/time.Second)))
		return
	}
	c := hardware.AddrChange{Interface: req.Interface, Addrs: req.Addrs, Gateway4: req.Gateway4,
		Gateway6: req.Gateway6, Rollback: time.Duration(req.RollbackSeconds) * time.Second}
	if _, err := hardware.ParseAddrChange(c); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, err := nc.Apply(r.Context(), c)
	switch {
	case errors.Is(err, hardware.ErrChangePending):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil && strings.Contains(err.Error(), "Link not found"):
		writeError(w, http.StatusBadRequest, fmt.Errorf("interface %s does not exist", req.Interface))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a.cfg.Logger.Warn("interface addresses applied through the API", "interface", req.Interface, "change", p.ID)
	writeJSON(w, http.StatusAccepted, map[string]any{"id": p.ID, "interface": p.Interface,
		"deadline": p.Deadline.UTC(), "confirm": "/api/network/confirm/" + p.ID})
}

func (a *API) netConfirm(w http.ResponseWriter, r *http.Request) {
	nc := a.network(w)
	if nc == nil {
		return
	}
	if err := nc.Confirm(r.PathValue("id")); err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: it was rolled back or already confirmed", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"confirmed": r.PathValue("id")})
}

func (a *API) netRollback(w http.ResponseWriter, r *http.Request) {
	nc := a.network(w)
	if nc == nil {
		return
	}
	if err := nc.RollbackNow(r.PathValue("id")); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, hardware.ErrNoPendingChange) {
			status = http.StatusNotFound
		}
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"rolled_back": r.PathValue("id")})
}

func (a *API) getRemote(w http.ResponseWriter, r *http.Request) {
	s, saved, err := LoadRemoteSettings(a.cfg.Store)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"settings": s, "saved": saved})
}

func (a *API) putRemote(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ping       *bool `json:"ping"`
		HTTP       *bool `json:"http"`
		HTTPSAdmin *bool `json:"https_admin"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Ping == nil && req.HTTP == nil && req.HTTPSAdmin == nil {
		writeError(w, http.StatusBadRequest, errors.New("give at least one of ping, http, https_admin (true or false)"))
		return
	}
	// Read-modify-write under the key's version, so two admins switching
	// different things at once do not undo each other.
	for attempt := 0; ; attempt++ {
		s, _, err := LoadRemoteSettings(a.cfg.Store)
		if err != nil {
			a.fail(w, err)
			return
		}
		_, ver, _, _ := a.cfg.Store.KVGet(RemoteNamespace, RemoteKey)
		if req.Ping != nil {
			s.Ping = *req.Ping
		}
		if req.HTTP != nil {
			s.HTTP = *req.HTTP
		}
		if req.HTTPSAdmin != nil {
			s.HTTPSAdmin = *req.HTTPSAdmin
		}
		raw, _ := json.Marshal(s)
		err = a.cfg.Store.KVApply(r.Context(), storage.KVOp{Op: storage.KVPut, NS: RemoteNamespace, Key: RemoteKey,
			Value: raw, IfVersion: storage.Version(ver)})
		if errors.Is(err, storage.ErrKVConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			a.fail(w, err)
			return
		}
		if !isLocalRequest(r) && !remoteAdminAllowed(s, r) {
			a.cfg.Logger.Warn("remote admin access switched off by a remote request; only loopback reaches the admin pages now",
				"client_ip", r.RemoteAddr)
		}
		writeJSON(w, http.StatusOK, map[string]any{"settings": s, "saved": true})
		return
	}
}

// PingSwitch makes the kernel answer or ignore pings as the "ping" switch
// says, on every node (the setting is replicated; each node applies it to
// its own kernel). It writes only when an admin has saved the switches and
// the kernel's value differs.
type PingSwitch struct {
	KV KVReader
	// ProcSysNet is /proc/sys/net (tests give a directory of their own).
	ProcSysNet string
	Logger     *slog.Logger
	// Every is the poll interval of the KV revision (0: 2 s).
	Every time.Duration
}

// Start runs the switch until the returned stop func is called.
func (p *PingSwitch) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.run(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}

func (p *PingSwitch) run(ctx context.Context) {
	every := p.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	var seen uint64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if rev := p.KV.KVRevision(RemoteNamespace); rev != seen {
			if err := p.Apply(); err != nil {
				log.Warn("apply the ping switch", "err", err)
			} else {
				seen = rev
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Apply writes the kernel settings for the saved switches now.
func (p *PingSwitch) Apply() error {
	s, saved, err := LoadRemoteSettings(p.KV)
	if err != nil || !saved {
		return err
	}
	return setPingAnswering(p.ProcSysNet, s.Ping)
}

// pingSysctls are the files (under /proc/sys/net) that make the kernel
// ignore echo requests; the IPv6 one exists since Linux 4.19.
var pingSysctls = []string{"ipv4/icmp_echo_ignore_all", "ipv6/icmp/echo_ignore_all"}

// setPingAnswering writes "0" (answer) or "1" (ignore) to each file that
// exists and differs.
func setPingAnswering(procSysNet string, answer bool) error {
	want := "1"
	if answer {
		want = "0"
	}
	var errs []error
	for _, f := range pingSysctls {
		path := filepath.Join(procSysNet, f)
		cur, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimSpace(string(cur)) == want {
			continue
		}
		if err := os.WriteFile(path, []byte(want+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}
