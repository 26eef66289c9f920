package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tandemmail/tandem/filter/firewall"
)

// FirewallAdmin is the node's mail firewall as the admin API sees it
// (node/firewall.go): the table of replicated blocks.
type FirewallAdmin interface {
	List() ([]firewall.Block, error)
	// Block blocks target (an IP, a CIDR or an account address) for d
	// (d <= 0: until removed).
	Block(ctx context.Context, target, reason string, d time.Duration) (firewall.Block, error)
	// Unblock removes the block of target; false when there was none.
	Unblock(ctx context.Context, target string) (bool, error)
}

// routesFirewall: GET/POST/DELETE /api/firewall/blocks. Blocks are
// box-wide, so only global administrators manage them.
func (a *API) routesFirewall() {
	m := a.mux
	m.HandleFunc("GET /api/firewall/blocks", a.globalAdminOnly(a.fwList))
	m.HandleFunc("POST /api/firewall/blocks", a.globalAdminOnly(a.fwBlock))
	m.HandleFunc("DELETE /api/firewall/blocks", a.globalAdminOnly(a.fwUnblock))
	m.HandleFunc("DELETE /api/firewall/blocks/{target}", a.globalAdminOnly(a.fwUnblock))
}

// fwBlockView is one row of the table.
type fwBlockView struct {
	firewall.Block
	Target string `json:"target"` // the key without its "ip:"/"acct:" kind
	Kind   string `json:"kind"`   // "ip" or "account"
}

func viewBlock(b firewall.Block) fwBlockView {
	v := fwBlockView{Block: b}
	if t, ok := strings.CutPrefix(b.Key, "acct:"); ok {
		v.Target, v.Kind = t, "account"
	} else {
		v.Target, v.Kind = strings.TrimPrefix(b.Key, "ip:"), "ip"
	}
	return v
}

func (a *API) firewallAdmin(w http.ResponseWriter) FirewallAdmin {
	if a.cfg.Firewall == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("the mail firewall is not running on this node"))
	}
	return a.cfg.Firewall
}

func (a *API) fwList(w http.ResponseWriter, r *http.Request) {
	fw := a.firewallAdmin(w)
	if fw == nil {
		return
	}
	bs, err := fw.List()
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]fwBlockView, 0, len(bs))
	for _, b := range bs {
		out = append(out, viewBlock(b))
	}
	writeJSON(w, http.StatusOK, out)
}

type fwBlockRequest struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
	// Duration is a Go duration ("2h"); empty or "0": until removed.
	Duration string `json:"duration"`
}

func (a *API) fwBlock(w http.ResponseWriter, r *http.Request) {
	fw := a.firewallAdmin(w)
	if fw == nil {
		return
	}
	var req fwBlockRequest
	if !decode(w, r, &req) {
		return
	}
	var d time.Duration
	if req.Duration != "" {
		var err error
		if d, err = time.ParseDuration(req.Duration); err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("duration %q: want a positive Go duration such as 2h, or empty for no expiry", req.Duration))
			return
		}
	}
	if len(req.Reason) > 200 {
		writeError(w, http.StatusBadRequest, errors.New("reason: at most 200 characters"))
		return
	}
	if _, err := firewall.ParseTarget(req.Target); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("target: %w", err))
		return
	}
	b, err := fw.Block(r.Context(), req.Target, req.Reason, d)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, viewBlock(b))
}

func (a *API) fwUnblock(w http.ResponseWriter, r *http.Request) {
	fw := a.firewallAdmin(w)
	if fw == nil {
		return
	}
	target := r.PathValue("target")
	if target == "" {
		target = r.URL.Query().Get("target")
	}
	if _, err := firewall.ParseTarget(target); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("target: %w", err))
		return
	}
	ok, err := fw.Unblock(r.Context(), target)
	if err != nil {
		a.fail(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no block for %s", target))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": target})
}
