package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tandemmail/tandem/filter/dnsbl"
	"github.com/tandemmail/tandem/filter/fingerprint"
	"github.com/tandemmail/tandem/filter/greylist"
	"github.com/tandemmail/tandem/filter/lists"
	"github.com/tandemmail/tandem/storage"
)

// routesFilterLists serves the sender-reputation settings (SPEC F1): the
// allow/block lists, DNSBL/DNSWL zones, greylisting, personal rules and
// spam fingerprints. Everything is stored in the replicated KV store under
// the namespaces the filter packages own; writes are read-modify-write
// with a version check, so two admins cannot lose each other's entries.
func (a *API) routesFilterLists() {
	m := a.mux
	m.HandleFunc("GET /api/filter/lists", a.getLists)
	m.HandleFunc("POST /api/filter/lists", a.changeLists(true))
	m.HandleFunc("DELETE /api/filter/lists", a.changeLists(false))
	m.HandleFunc("GET /api/filter/dnsbl", a.getDNSBL)
	m.HandleFunc("POST /api/filter/dnsbl", a.addDNSBL)
	m.HandleFunc("DELETE /api/filter/dnsbl/{zone}", a.delDNSBL)
	m.HandleFunc("GET /api/filter/greylist", a.getGreylist)
	m.HandleFunc("PATCH /api/filter/greylist", a.patchGreylist)
	m.HandleFunc("GET /api/filter/rules", a.getRules)
	m.HandleFunc("POST /api/filter/rules", a.addRule)
	m.HandleFunc("DELETE /api/filter/rules/{user}/{id}", a.delRule)
	m.HandleFunc("GET /api/filter/fingerprints", a.getFingerprints)
	m.HandleFunc("POST /api/filter/fingerprints", a.addFingerprint)
	m.HandleFunc("DELETE /api/filter/fingerprints/{key}", a.delFingerprint)
}

// filterNotFound marks an error of this file's handlers as a 404.
type filterNotFound struct{ error }

func notFoundf(format string, a ...any) error { return filterNotFound{fmt.Errorf(format, a...)} }

// kvUpdate reads ns/key, lets change modify the value (nil: delete) and
// writes it only if nobody wrote in between, retrying a few times.
func (a *API) kvUpdate(ctx context.Context, ns, key string, change func(old []byte) ([]byte, error)) error {
	for range 5 {
		old, ver, _, err := a.cfg.Store.KVGet(ns, key)
		if err != nil {
			return err
		}
		val, err := change(old)
		if err != nil {
			return err
		}
		op := storage.KVOp{Op: storage.KVPut, NS: ns, Key: key, Value: val, IfVersion: storage.Version(ver)}
		if val == nil {
			op.Op, op.Value = storage.KVDelete, nil
		}
		err = a.cfg.Store.KVApply(ctx, op)
		if !errors.Is(err, storage.ErrKVConflict) {
			return err
		}
	}
	return fmt.Errorf("%s/%s changed concurrently, try again", ns, key)
}

func (a *API) failFilter(w http.ResponseWriter, err error) {
	if errors.As(err, new(filterNotFound)) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	a.fail(w, err)
}

// listScope maps what the admin names ("global", a hosted domain, an
// account's address) to the KV key, and back for display.
func (a *API) listScope(name string) (key, display string, err error) {
	name = strings.ToLower(strings.TrimSpace(name))
	switch {
	case name == "" || name == "global":
		return lists.GlobalScope, "global", nil
	case strings.Contains(name, "@"):
		acct, err := a.cfg.Store.AccountByAddress(name)
		if err != nil {
			return "", "", fmt.Errorf("scope %q: %w", name, err)
		}
		return lists.UserScope(acct.Address), acct.Address, nil
	default:
		if !a.cfg.Store.HasDomain(name) {
			return "", "", fmt.Errorf("scope %q: not a hosted domain (use global, a domain or an account address): %w", name, storage.ErrNoDomain)
		}
		return lists.DomainScope(name), name, nil
	}
}

func (a *API) scopeDisplay(key string) string {
	switch {
	case key == lists.GlobalScope:
		return "global"
	case strings.HasPrefix(key, "domain/"):
		return strings.TrimPrefix(key, "domain/")
	case strings.HasPrefix(key, "user/"):
		return strings.TrimPrefix(key, "user/")
	}
	return key
}

type listsDoc struct {
	Scope string   `json:"scope"`
	Block []string `json:"block"`
	Allow []string `json:"allow"`
}

func (a *API) getLists(w http.ResponseWriter, r *http.Request) {
	var out []listsDoc
	add := func(key string, raw []byte) {
		l, err := lists.ParseLists(raw)
		if err != nil {
			return
		}
		out = append(out, listsDoc{Scope: a.scopeDisplay(key), Block: nonNilStrings(l.Block), Allow: nonNilStrings(l.Allow)})
	}
	if s := r.URL.Query().Get("scope"); s != "" {
		key, display, err := a.listScope(s)
		if err != nil {
			a.fail(w, err)
			return
		}
		raw, _, _, err := a.cfg.Store.KVGet(lists.Namespace, key)
		if err != nil {
			a.fail(w, err)
			return
		}
		add(key, raw)
		out[0].Scope = display
		writeJSON(w, http.StatusOK, out)
		return
	}
	err := a.cfg.Store.KVList(lists.Namespace, "", func(key string, value []byte, _ uint64) error {
		add(key, append([]byte(nil), value...))
		return nil
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	if out == nil {
		out = []listsDoc{}
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *API) changeLists(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Scope   string   `json:"scope"`
			List    string   `json:"list"`
			Entries []string `json:"entries"`
		}
		if !decode(w, r, &req) {
			return
		}
		if len(req.Entries) == 0 {
			writeError(w, http.StatusBadRequest, errors.New("no entries given"))
			return
		}
		key, display, err := a.listScope(req.Scope)
		if err != nil {
			a.fail(w, err)
			return
		}
		var doc lists.Lists
		err = a.kvUpdate(r.Context(), lists.Namespace, key, func(old []byte) ([]byte, error) {
			l, err := lists.ParseLists(old)
			if err != nil {
				return nil, err
			}
			for _, e := range req.Entries {
				var changed bool
				if add {
					changed, err = l.Add(req.List, e)
				} else {
					changed, err = l.Remove(req.List, e)
				}
				if err != nil {
					return nil, err
				}
				if !add && !changed {
					return nil, notFoundf("%q is not on the %s %s list", e, display, req.List)
				}
			}
			doc = l
			if len(l.Block) == 0 && len(l.Allow) == 0 {
				return nil, nil
			}
			return json.Marshal(l)
		})
		if err != nil {
			a.failFilter(w, err)
			return
		}
		writeJSON(w, http.StatusOK, listsDoc{Scope: display, Block: nonNilStrings(doc.Block), Allow: nonNilStrings(doc.Allow)})
	}
}

func (a *API) dnsblZones() ([]dnsbl.Zone, error) {
	raw, _, _, err := a.cfg.Store.KVGet(dnsbl.Namespace, dnsbl.ZonesKey)
	if err != nil {
		return nil, err
	}
	zs, err := dnsbl.ParseZones(raw)
	if zs == nil {
		zs = []dnsbl.Zone{}
	}
	return zs, err
}

func (a *API) getDNSBL(w http.ResponseWriter, r *http.Request) {
	zs, err := a.dnsblZones()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, zs)
}

func (a *API) addDNSBL(w http.ResponseWriter, r *http.Request) {
	var z dnsbl.Zone
	if !decode(w, r, &z) {
		return
	}
	if err := z.Normalize(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	err := a.kvUpdate(r.Context(), dnsbl.Namespace, dnsbl.ZonesKey, func(old []byte) ([]byte, error) {
		zs, err := dnsbl.ParseZones(old)
		if err != nil {
			return nil, err
		}
		replaced := false
		for i := range zs {
			if zs[i].Zone == z.Zone {
				zs[i], replaced = z, true
			}
		}
		if !replaced {
			zs = append(zs, z)
		}
		return json.Marshal(zs)
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, z)
}

func (a *API) delDNSBL(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSuffix(strings.ToLower(r.PathValue("zone")), ".")
	err := a.kvUpdate(r.Context(), dnsbl.Namespace, dnsbl.ZonesKey, func(old []byte) ([]byte, error) {
		zs, err := dnsbl.ParseZones(old)
		if err != nil {
			return nil, err
		}
		for i := range zs {
			if zs[i].Zone == name {
				zs = append(zs[:i], zs[i+1:]...)
				return json.Marshal(zs)
			}
		}
		return nil, notFoundf("zone %s is not configured", name)
	})
	if err != nil {
		a.failFilter(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type greylistStatus struct {
	Settings greylist.Settings  `json:"settings"`
	Triplets []greylist.Triplet `json:"triplets"`
}

func (a *API) greylistSettings() (greylist.Settings, error) {
	raw, _, _, err := a.cfg.Store.KVGet(greylist.ConfigNamespace, greylist.ConfigKey)
	if err != nil {
		return greylist.Settings{}, err
	}
	return greylist.ParseSettings(raw)
}

func (a *API) getGreylist(w http.ResponseWriter, r *http.Request) {
	st, err := a.greylistSettings()
	if err != nil {
		a.fail(w, err)
		return
	}
	limit := 100
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l >= 0 && l <= 100000 {
		limit = l
	}
	ts, err := greylist.ListTriplets(a.cfg.Store, limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	if ts == nil {
		ts = []greylist.Triplet{}
	}
	writeJSON(w, http.StatusOK, greylistStatus{Settings: st, Triplets: ts})
}

// patchGreylist changes the given settings only.
func (a *API) patchGreylist(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Enabled             *bool     `json:"enabled"`
		Domains             *[]string `json:"domains"`
		AddDomains          []string  `json:"add_domains"`
		RemoveDomains       []string  `json:"remove_domains"`
		DelaySeconds        *int64    `json:"delay_seconds"`
		ExpirySeconds       *int64    `json:"expiry_seconds"`
		PassValidSeconds    *int64    `json:"pass_valid_seconds"`
		AutoWhitelistPasses *int      `json:"auto_whitelist_passes"`
	}
	if !decode(w, r, &req) {
		return
	}
	var st greylist.Settings
	err := a.kvUpdate(r.Context(), greylist.ConfigNamespace, greylist.ConfigKey, func(old []byte) ([]byte, error) {
		s, err := greylist.ParseSettings(old)
		if err != nil {
			return nil, err
		}
		if req.Enabled != nil {
			s.Enabled = *req.Enabled
		}
		if req.Domains != nil {
			s.Domains = append([]string(nil), (*req.Domains)...)
		}
		s.Domains = append(s.Domains, req.AddDomains...)
		for _, d := range req.RemoveDomains {
			d = strings.ToLower(strings.TrimSpace(d))
			for i := 0; i < len(s.Domains); i++ {
				if s.Domains[i] == d {
					s.Domains = append(s.Domains[:i], s.Domains[i+1:]...)
					i--
				}
			}
		}
		for _, f := range []struct {
			p *int64
			v *int64
		}{{req.DelaySeconds, &s.DelaySeconds}, {req.ExpirySeconds, &s.ExpirySeconds}, {req.PassValidSeconds, &s.PassValidSeconds}} {
			if f.p != nil {
				*f.v = *f.p
			}
		}
		if req.AutoWhitelistPasses != nil {
			s.AutoWhitelistPasses = *req.AutoWhitelistPasses
		}
		if err := s.Normalize(); err != nil {
			return nil, err
		}
		st = s
		return json.Marshal(s)
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// ruleUser maps an account address to its rules key.
func (a *API) ruleUser(addr string) (string, storage.Account, error) {
	if addr == "" {
		return "", storage.Account{}, errors.New("give the account's address (user)")
	}
	acct, err := a.cfg.Store.AccountByAddress(addr)
	if err != nil {
		return "", acct, fmt.Errorf("rules of %q: %w", addr, err)
	}
	return lists.UserScope(acct.Address), acct, nil
}

func (a *API) getRules(w http.ResponseWriter, r *http.Request) {
	key, _, err := a.ruleUser(r.URL.Query().Get("user"))
	if err != nil {
		a.fail(w, err)
		return
	}
	raw, _, _, err := a.cfg.Store.KVGet(lists.RulesNamespace, key)
	if err != nil {
		a.fail(w, err)
		return
	}
	rs, err := lists.ParseRules(raw)
	if err != nil {
		a.fail(w, err)
		return
	}
	if rs == nil {
		rs = []lists.Rule{}
	}
	writeJSON(w, http.StatusOK, rs)
}

func (a *API) addRule(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
		lists.Rule
	}
	if !decode(w, r, &req) {
		return
	}
	key, _, err := a.ruleUser(req.User)
	if err != nil {
		a.fail(w, err)
		return
	}
	rule := req.Rule
	rule.ID = ""
	if err := rule.Normalize(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	err = a.kvUpdate(r.Context(), lists.RulesNamespace, key, func(old []byte) ([]byte, error) {
		rs, err := lists.ParseRules(old)
		if err != nil {
			return nil, err
		}
		if len(rs) >= lists.MaxRulesPerUser {
			return nil, fmt.Errorf("%s already has %d rules, the most allowed", req.User, len(rs))
		}
		return json.Marshal(append(rs, rule))
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rule)
}

func (a *API) delRule(w http.ResponseWriter, r *http.Request) {
	key, _, err := a.ruleUser(r.PathValue("user"))
	if err != nil {
		a.fail(w, err)
		return
	}
	id := r.PathValue("id")
	err = a.kvUpdate(r.Context(), lists.RulesNamespace, key, func(old []byte) ([]byte, error) {
		rs, err := lists.ParseRules(old)
		if err != nil {
			return nil, err
		}
		for i := range rs {
			if rs[i].ID == id {
				rs = append(rs[:i], rs[i+1:]...)
				if len(rs) == 0 {
					return nil, nil
				}
				return json.Marshal(rs)
			}
		}
		return nil, notFoundf("%s has no rule %s", r.PathValue("user"), id)
	})
	if err != nil {
		a.failFilter(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type fingerprintInfo struct {
	Key   string    `json:"key"`
	Added time.Time `json:"added"`
	Note  string    `json:"note,omitempty"`
}

func (a *API) getFingerprints(w http.ResponseWriter, r *http.Request) {
	out := []fingerprintInfo{}
	err := a.cfg.Store.KVList(fingerprint.Namespace, "", func(key string, value []byte, _ uint64) error {
		var rec fingerprint.Record
		if json.Unmarshal(value, &rec) == nil {
			out = append(out, fingerprintInfo{Key: key, Added: time.Unix(rec.Added, 0).UTC(), Note: rec.Note})
		}
		return nil
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// addFingerprint learns a known-spam message sent as the request body.
func (a *API) addFingerprint(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	sig, err := fingerprint.FromMessage(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("cannot fingerprint this message: %w", err))
		return
	}
	io.Copy(io.Discard, body)
	if err := fingerprint.Add(r.Context(), a.cfg.Store, sig, r.URL.Query().Get("note"), time.Now()); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, fingerprintInfo{Key: sig.Key(), Added: time.Now().UTC(), Note: r.URL.Query().Get("note")})
}

func (a *API) delFingerprint(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, _, ok, err := a.cfg.Store.KVGet(fingerprint.Namespace, key); err != nil || !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no fingerprint %s", key))
		return
	}
	if err := a.cfg.Store.KVApply(r.Context(), storage.KVOp{Op: storage.KVDelete, NS: fingerprint.Namespace, Key: key}); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
