package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tandemmail/tandem/storage"
)

// routesWebAdmin: which domains an account administers (KV
// web.domain_admins; CLI `tandem account admin ADDR --domains a,b`).
// Only global administrators reach these (they have no domain scope rule).
func (a *API) routesWebAdmin() {
	a.mux.HandleFunc("GET /api/accounts/{addr}/domains", func(w http.ResponseWriter, r *http.Request) {
		acct, err := a.cfg.Store.AccountByAddress(r.PathValue("addr"))
		if err != nil {
			a.fail(w, err)
			return
		}
		ds, err := DomainAdmins(a.cfg.Store, acct.Address)
		if err != nil {
			a.fail(w, err)
			return
		}
		if ds == nil {
			ds = []string{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"address": acct.Address, "global_admin": acct.Admin, "domains": ds})
	})
	a.mux.HandleFunc("PUT /api/accounts/{addr}/domains", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Domains []string `json:"domains"`
		}
		if !decode(w, r, &req) {
			return
		}
		acct, err := a.cfg.Store.AccountByAddress(r.PathValue("addr"))
		if err != nil {
			a.fail(w, err)
			return
		}
		ds, err := a.checkDomains(req.Domains)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		key := strings.ToLower(acct.Address)
		if len(ds) == 0 {
			err = a.cfg.Store.KVDeleteKey(r.Context(), nsDomainAdmins, key)
		} else {
			b, _ := json.Marshal(ds)
			err = a.cfg.Store.KVPutValue(r.Context(), nsDomainAdmins, key, b)
		}
		if err != nil {
			a.fail(w, fmt.Errorf("save domain admin %s: %w", acct.Address, err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"address": acct.Address, "domains": ds})
	})
}

// checkDomains normalises a list of domains, each of which must be hosted.
func (a *API) checkDomains(in []string) ([]string, error) {
	hosted, err := a.cfg.Store.Domains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range in {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" {
			continue
		}
		if !slices.ContainsFunc(hosted, func(h storage.Domain) bool { return h.Name == d }) {
			return nil, fmt.Errorf("domain %q: %w", d, storage.ErrNoDomain)
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) > 1000 {
		return nil, errors.New("at most 1000 domains per administrator")
	}
	return out, nil
}
