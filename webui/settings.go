package webui

// Settings export and import as one file (SPEC W1, DESIGN §7):
//
//	GET  /api/settings/export   the document below
//	POST /api/settings/import   restore it; counts of created/updated/unchanged
//
// The document holds the cluster-wide configuration: domains with their
// catch-all, accounts (bcrypt password hashes, quotas, admin flag, display
// names), aliases, and every KV namespace except the volatile ones named in
// VolatileNamespaces. It holds password hashes and any uploaded TLS private
// key (tls.certs): keep the file as secret as the box's root password.
// Mail itself (mailboxes, messages, the queue, the mail log) is not part of
// it; that is what replication and backups are for.
//
// An import is idempotent: an item already present with the same content
// is left alone ("unchanged"), one that differs is brought to the file's
// content ("updated"), a missing one is made ("created"). It never deletes:
// an alias keeps targets the file does not list, and items the file does
// not mention stay.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// SettingsFormat and SettingsVersion identify the export document.
const (
	SettingsFormat  = "tandem-settings"
	SettingsVersion = 1
)

// VolatileNamespaces are KV namespaces left out of an export: logins
// (web.sessions), greylisting's pending triplets (greylist: they expire
// within days and are relearned), and held mail's records (quarantine.*:
// they point at messages, which are mail, not settings). Rate counters are
// never in the KV store (they stay in memory). Firewall blocks
// (firewall.blocks) are decisions, not counters, so they are exported; the
// temporary ones carry their expiry and lapse on the new box as on the old.
var VolatileNamespaces = []string{"web.sessions", "greylist", "quarantine"}

func volatileNamespace(ns string) bool {
	for _, v := range VolatileNamespaces {
		if ns == v || strings.HasPrefix(ns, v+".") {
			return true
		}
	}
	return false
}

// Settings is the export document.
type Settings struct {
	Format   string            `json:"format"`
	Version  int               `json:"version"`
	Exported time.Time         `json:"exported"`
	Domains  []SettingsDomain  `json:"domains"`
	Accounts []SettingsAccount `json:"accounts"`
	Aliases  []storage.Alias   `json:"aliases"`
	KV       []SettingsKV      `json:"kv"`
}

// SettingsDomain is a domain and its catch-all target.
type SettingsDomain struct {
	Name     string `json:"name"`
	CatchAll string `json:"catch_all,omitempty"`
}

// SettingsAccount is an account without its mail.
type SettingsAccount struct {
	Address      string `json:"address"`
	PasswordHash string `json:"password_hash"`
	DisplayName  string `json:"display_name,omitempty"`
	QuotaBytes   int64  `json:"quota_bytes,omitempty"`
	Admin        bool   `json:"admin,omitempty"`
}

// SettingsKV is one KV entry: JSON values are kept readable, any other
// value (a counter, binary data) is base64.
type SettingsKV struct {
	NS     string          `json:"ns"`
	Key    string          `json:"key"`
	JSON   json.RawMessage `json:"json,omitempty"`
	Base64 []byte          `json:"base64,omitempty"`
}

// value is the stored form: the export writes a value as JSON only when it
// is compact JSON, and a JSON encoder with indentation re-indents it, so
// compacting gives back the exact bytes.
func (e SettingsKV) value() []byte {
	if e.JSON != nil {
		var buf bytes.Buffer
		if json.Compact(&buf, e.JSON) == nil {
			return buf.Bytes()
		}
		return e.JSON
	}
	if e.Base64 == nil {
		return []byte{}
	}
	return e.Base64
}

// SettingsCounts counts what an import did to one kind of item.
type SettingsCounts struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
}

// SettingsReport is the result of an import.
type SettingsReport struct {
	Domains  SettingsCounts `json:"domains"`
	Accounts SettingsCounts `json:"accounts"`
	Aliases  SettingsCounts `json:"aliases"`
	KV       SettingsCounts `json:"kv"`
	Errors   []string       `json:"errors"`
}

func (a *API) routesSettings() {
	a.mux.HandleFunc("GET /api/settings/export", a.globalAdminOnly(a.exportSettings))
	a.mux.HandleFunc("POST /api/settings/import", a.globalAdminOnly(a.importSettings))
}

// ExportSettings builds the export document from this node's state.
func ExportSettings(st *storage.Store) (*Settings, error) {
	doc := &Settings{Format: SettingsFormat, Version: SettingsVersion, Exported: time.Now().UTC(),
		Domains: []SettingsDomain{}, Accounts: []SettingsAccount{}, Aliases: []storage.Alias{}, KV: []SettingsKV{}}
	ds, err := st.Domains()
	if err != nil {
		return nil, fmt.Errorf("export domains: %w", err)
	}
	for _, d := range ds {
		doc.Domains = append(doc.Domains, SettingsDomain{Name: d.Name, CatchAll: d.CatchAll})
	}
	accts, _, err := st.Accounts(storage.AccountQuery{})
	if err != nil {
		return nil, fmt.Errorf("export accounts: %w", err)
	}
	for _, ac := range accts {
		h, err := st.PasswordHash(ac.Address)
		if err != nil {
			return nil, fmt.Errorf("export account %s: %w", ac.Address, err)
		}
		doc.Accounts = append(doc.Accounts, SettingsAccount{Address: ac.Address, PasswordHash: h,
			DisplayName: ac.DisplayName, QuotaBytes: ac.QuotaBytes, Admin: ac.Admin})
	}
	al, err := st.Aliases("")
	if err != nil {
		return nil, fmt.Errorf("export aliases: %w", err)
	}
	for _, x := range al {
		t := slices.Clone(x.Targets)
		slices.Sort(t)
		doc.Aliases = append(doc.Aliases, storage.Alias{Address: x.Address, Targets: t})
	}
	nss, err := st.KVNamespaces()
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		if volatileNamespace(ns) {
			continue
		}
		err := st.KVList(ns, "", func(key string, value []byte, _ uint64) error {
			e := SettingsKV{NS: ns, Key: key}
			if json.Valid(value) {
				var buf bytes.Buffer
				if json.Compact(&buf, value) == nil && bytes.Equal(buf.Bytes(), value) {
					e.JSON = slices.Clone(value)
				}
			}
			if e.JSON == nil {
				e.Base64 = slices.Clone(value)
			}
			doc.KV = append(doc.KV, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return doc, nil
}

func (a *API) exportSettings(w http.ResponseWriter, r *http.Request) {
	doc, err := ExportSettings(a.cfg.Store)
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="tandem-settings-`+doc.Exported.Format("20060102-150405")+`.json"`)
	writeJSON(w, http.StatusOK, doc)
}

// CheckSettings validates a document before anything is written.
func CheckSettings(doc *Settings) error {
	if doc.Format != SettingsFormat {
		return fmt.Errorf("not a Tandem settings file (format %q, want %q)", clip(doc.Format), SettingsFormat)
	}
	if doc.Version < 1 || doc.Version > SettingsVersion {
		return fmt.Errorf("settings file version %d: this Tandem reads version 1 to %d", doc.Version, SettingsVersion)
	}
	for i, d := range doc.Domains {
		if err := storage.CheckDomain(strings.ToLower(d.Name)); err != nil {
			return fmt.Errorf("domains[%d]: %w", i, err)
		}
	}
	for i, ac := range doc.Accounts {
		if _, err := storage.NormalizeAddress(ac.Address); err != nil {
			return fmt.Errorf("accounts[%d]: %w", i, err)
		}
		if ac.PasswordHash == "" || !strings.HasPrefix(ac.PasswordHash, "$2") {
			return fmt.Errorf("accounts[%d] %s: password_hash must be a bcrypt hash", i, ac.Address)
		}
		if ac.QuotaBytes < 0 {
			return fmt.Errorf("accounts[%d] %s: negative quota", i, ac.Address)
		}
	}
	for i, al := range doc.Aliases {
		if len(al.Targets) == 0 {
			return fmt.Errorf("aliases[%d] %s: no targets", i, al.Address)
		}
	}
	for i, e := range doc.KV {
		if e.JSON != nil && e.Base64 != nil {
			return fmt.Errorf("kv[%d] %s/%s: give json or base64, not both", i, e.NS, e.Key)
		}
		if e.NS == "" || e.Key == "" || len(e.Key) > storage.MaxKVKey {
			return fmt.Errorf("kv[%d]: ns and key (1-%d bytes) are required", i, storage.MaxKVKey)
		}
		if len(e.value()) > storage.MaxKVValue {
			return fmt.Errorf("kv[%d] %s/%s: value larger than %d bytes", i, e.NS, e.Key, storage.MaxKVValue)
		}
	}
	return nil
}

// ImportSettings restores a document (see the file comment).
func ImportSettings(ctx context.Context, st *storage.Store, doc *Settings) (SettingsReport, error) {
	rep := SettingsReport{Errors: []string{}}
	if err := CheckSettings(doc); err != nil {
		return rep, err
	}
	fail := func(c *SettingsCounts, what string, err error) {
		c.Failed++
		if len(rep.Errors) < 100 {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", what, err))
		}
	}
	existing := map[string]storage.Domain{}
	ds, err := st.Domains()
	if err != nil {
		return rep, err
	}
	for _, d := range ds {
		existing[d.Name] = d
	}
	// Domains first (accounts need them); catch-alls after the accounts
	// they may point at.
	createdNow := map[string]bool{}
	for _, d := range doc.Domains {
		name := strings.ToLower(d.Name)
		if _, ok := existing[name]; ok {
			continue
		}
		if err := st.AddDomain(ctx, name); err != nil {
			fail(&rep.Domains, "domain "+name, err)
			continue
		}
		rep.Domains.Created++
		createdNow[name] = true
	}
	for _, ac := range doc.Accounts {
		importAccount(ctx, st, ac, &rep.Accounts, fail)
	}
	for _, d := range doc.Domains {
		name := strings.ToLower(d.Name)
		cur, had := existing[name]
		if !had && !createdNow[name] {
			continue // failed above
		}
		if cur.CatchAll == d.CatchAll {
			if had {
				rep.Domains.Unchanged++
			}
			continue
		}
		if err := st.SetCatchAll(ctx, name, d.CatchAll); err != nil {
			fail(&rep.Domains, "catch-all of "+name, err)
			continue
		}
		if had {
			rep.Domains.Updated++
		}
	}
	aliases, err := st.Aliases("")
	if err != nil {
		return rep, err
	}
	curAlias := map[string][]string{}
	for _, al := range aliases {
		curAlias[al.Address] = al.Targets
	}
	for _, al := range doc.Aliases {
		addr, err := storage.NormalizeAddress(al.Address)
		if err != nil {
			fail(&rep.Aliases, "alias "+al.Address, err)
			continue
		}
		cur, ok := curAlias[addr]
		var missing []string
		for _, t := range al.Targets {
			if nt, err := storage.NormalizeAddress(t); err != nil || !slices.Contains(cur, nt) {
				missing = append(missing, t)
			}
		}
		if len(missing) == 0 {
			rep.Aliases.Unchanged++
			continue
		}
		if err := st.AddAlias(ctx, addr, missing...); err != nil {
			fail(&rep.Aliases, "alias "+addr, err)
			continue
		}
		if ok {
			rep.Aliases.Updated++
		} else {
			rep.Aliases.Created++
		}
	}
	importKV(ctx, st, doc.KV, &rep.KV, fail)
	return rep, nil
}

func importAccount(ctx context.Context, st *storage.Store, ac SettingsAccount, c *SettingsCounts, fail func(*SettingsCounts, string, error)) {
	cur, err := st.AccountByAddress(ac.Address)
	if errors.Is(err, storage.ErrNoAccount) {
		if _, err := st.AddAccount(ctx, storage.NewAccount{Address: ac.Address, PasswordHash: ac.PasswordHash,
			DisplayName: ac.DisplayName, QuotaBytes: ac.QuotaBytes, Admin: ac.Admin}); err != nil {
			fail(c, "account "+ac.Address, err)
			return
		}
		c.Created++
		return
	}
	if err != nil {
		fail(c, "account "+ac.Address, err)
		return
	}
	changed := false
	if cur.DisplayName != ac.DisplayName || cur.QuotaBytes != ac.QuotaBytes || cur.Admin != ac.Admin {
		if _, err := st.UpdateAccount(ctx, ac.Address, storage.AccountUpdate{DisplayName: &ac.DisplayName,
			QuotaBytes: &ac.QuotaBytes, Admin: &ac.Admin}); err != nil {
			fail(c, "account "+ac.Address, err)
			return
		}
		changed = true
	}
	if h, err := st.PasswordHash(ac.Address); err == nil && h != ac.PasswordHash {
		if err := st.SetPasswordHash(ctx, ac.Address, ac.PasswordHash); err != nil {
			fail(c, "password of "+ac.Address, err)
			return
		}
		changed = true
	}
	if changed {
		c.Updated++
	} else {
		c.Unchanged++
	}
}

// importKV writes the entries that differ, in batches well under the KV
// batch limits (one Raft entry each).
func importKV(ctx context.Context, st *storage.Store, entries []SettingsKV, c *SettingsCounts, fail func(*SettingsCounts, string, error)) {
	const maxOps, maxBytes = 500, 4 << 20
	var ops []storage.KVOp
	var created []bool
	size := 0
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if err := st.KVApply(ctx, ops...); err != nil {
			c.Failed += len(ops)
			fail(&SettingsCounts{}, fmt.Sprintf("kv batch of %d entries from %s/%s", len(ops), ops[0].NS, ops[0].Key), err)
		} else {
			for _, cr := range created {
				if cr {
					c.Created++
				} else {
					c.Updated++
				}
			}
		}
		ops, created, size = nil, nil, 0
	}
	for _, e := range entries {
		v := e.value()
		cur, _, ok, err := st.KVGet(e.NS, e.Key)
		if err != nil {
			fail(c, "kv "+e.NS+"/"+e.Key, err)
			continue
		}
		if ok && bytes.Equal(cur, v) {
			c.Unchanged++
			continue
		}
		if len(ops) >= maxOps || size+len(v)+len(e.Key) > maxBytes {
			flush()
		}
		ops = append(ops, storage.KVOp{Op: storage.KVPut, NS: e.NS, Key: e.Key, Value: v})
		created = append(created, !ok)
		size += len(v) + len(e.Key) + 64
	}
	flush()
}

func (a *API) importSettings(w http.ResponseWriter, r *http.Request) {
	var doc Settings
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody*4))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("not a settings file: %w", err))
		return
	}
	rep, err := ImportSettings(r.Context(), a.cfg.Store, &doc)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	a.cfg.Logger.Info("settings imported", "domains", rep.Domains, "accounts", rep.Accounts,
		"aliases", rep.Aliases, "kv", rep.KV)
	writeJSON(w, http.StatusOK, rep)
}
