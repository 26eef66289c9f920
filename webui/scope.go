package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tandemmail/tandem/storage"
)

// Principal is who makes a web request: a global administrator (an
// account with Admin=true) or a domain administrator (KV
// web.domain_admins). Requests on the root-only unix socket carry none and
// may do everything.
type Principal struct {
	Address string   `json:"address"`
	Global  bool     `json:"global"`
	Domains []string `json:"domains,omitempty"`
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the request's principal, nil on the unix socket.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// RequestIsGlobal tells whether r may use box-wide routes: true on the
// unix socket and for global administrators (APIConfig.GlobalAdmin).
func RequestIsGlobal(r *http.Request) bool {
	p := PrincipalFrom(r.Context())
	return p == nil || p.Global
}

// AllowsDomain tells whether p may see and change domain d's data.
func (p *Principal) AllowsDomain(d string) bool {
	if p == nil || p.Global {
		return true
	}
	return slices.Contains(p.Domains, strings.ToLower(strings.TrimSuffix(d, ".")))
}

// AllowsAddress tells whether p may manage address addr (by its domain).
func (p *Principal) AllowsAddress(addr string) bool {
	if p == nil || p.Global {
		return true
	}
	i := strings.LastIndexByte(addr, '@')
	return i >= 0 && p.AllowsDomain(addr[i+1:])
}

// DomainAdmins reads the domains an account administers ("" list if none).
func DomainAdmins(st *storage.Store, addr string) ([]string, error) {
	v, _, ok, err := st.KVGet(nsDomainAdmins, strings.ToLower(addr))
	if err != nil || !ok {
		return nil, err
	}
	var ds []string
	if err := json.Unmarshal(v, &ds); err != nil {
		return nil, fmt.Errorf("web.domain_admins %s: %w", addr, err)
	}
	return ds, nil
}

// principalFor builds the principal of an account, or an error if the
// account administers nothing.
func principalFor(st *storage.Store, acct storage.Account) (*Principal, error) {
	if acct.Admin {
		return &Principal{Address: acct.Address, Global: true}, nil
	}
	ds, err := DomainAdmins(st, acct.Address)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, errNotAdmin
	}
	return &Principal{Address: acct.Address, Domains: ds}, nil
}

var errNotAdmin = errors.New("this account is not an administrator")

var errForbidden = errors.New("forbidden: this needs a global administrator or another domain")

// scopeRule checks a domain administrator's request to one route pattern
// before the handler runs. Routes without a rule are for global
// administrators only. Body-dependent checks (the address of a new account
// or alias, import rows) and list filtering happen in the handlers through
// the Principal helpers.
type scopeRule func(a *API, p *Principal, r *http.Request) error

func pathDomain(key string) scopeRule {
	return func(a *API, p *Principal, r *http.Request) error {
		if !p.AllowsDomain(r.PathValue(key)) {
			return errForbidden
		}
		return nil
	}
}

func pathAddress(key string) scopeRule {
	return func(a *API, p *Principal, r *http.Request) error {
		if !p.AllowsAddress(r.PathValue(key)) {
			return errForbidden
		}
		return nil
	}
}

func allowed(a *API, p *Principal, r *http.Request) error { return nil }

// queueItem lets a domain administrator act on a queued message only if
// its sender or a recipient is in one of their domains.
func queueItem(a *API, p *Principal, r *http.Request) error {
	e, err := a.cfg.Store.QueueEntry(r.PathValue("id"))
	if err != nil {
		return err
	}
	if !queueEntryAllowed(p, e) {
		return errForbidden
	}
	return nil
}

func queueEntryAllowed(p *Principal, e storage.QueueEntry) bool {
	if p.AllowsAddress(e.From) {
		return true
	}
	for _, rc := range e.Rcpts {
		if p.AllowsAddress(rc.Addr) {
			return true
		}
	}
	return false
}

func logRecordAllowed(p *Principal, l storage.LogRecord) bool {
	if p.AllowsAddress(l.From) {
		return true
	}
	for _, rc := range l.Rcpts {
		if p.AllowsAddress(rc) {
			return true
		}
	}
	return false
}

// transcriptItem: the transcript of a message the admin's log shows.
func transcriptItem(a *API, p *Principal, r *http.Request) error {
	recs, err := a.cfg.Store.LogSearch(storage.LogQuery{QueueID: r.PathValue("id")})
	if err != nil {
		return err
	}
	for _, l := range recs {
		if logRecordAllowed(p, l) {
			return nil
		}
	}
	return errForbidden
}

// domainScope lists every route a domain administrator may use.
var domainScope = map[string]scopeRule{
	"GET /api/domains":                  allowed, // filtered in listDomains
	"DELETE /api/domains/{name}":        pathDomain("name"),
	"PUT /api/domains/{name}/catchall":  pathDomain("name"),
	"GET /api/accounts":                 allowed, // domain checked in listAccounts
	"POST /api/accounts":                allowed, // address checked in addAccount
	"POST /api/accounts/import":         allowed, // each row checked
	"GET /api/accounts/{addr}":          pathAddress("addr"),
	"PATCH /api/accounts/{addr}":        pathAddress("addr"),
	"DELETE /api/accounts/{addr}":       pathAddress("addr"),
	"PUT /api/accounts/{addr}/password": pathAddress("addr"),
	"GET /api/aliases":                  allowed, // filtered in listAliases
	"POST /api/aliases":                 allowed, // address checked in addAlias
	"DELETE /api/aliases/{addr}":        pathAddress("addr"),
	"GET /api/queue":                    allowed, // filtered by filterJSON
	"GET /api/queue/{id}":               queueItem,
	"POST /api/queue/{id}/retry":        queueItem,
	"DELETE /api/queue/{id}":            queueItem,
	"POST /api/queue/{id}/bounce":       queueItem,
	"GET /api/log":                      allowed, // filtered by filterJSON
	"GET /api/log/transcript/{id}":      transcriptItem,
	"GET /api/openapi.json":             allowed,
}

// listFilters filter the JSON arrays of list routes the handlers do not
// filter themselves (webui/queue.go): one place, so a new list field cannot
// leak another domain's entries.
var listFilters = map[string]func(p *Principal, raw json.RawMessage) bool{
	"GET /api/queue": func(p *Principal, raw json.RawMessage) bool {
		var e storage.QueueEntry
		return json.Unmarshal(raw, &e) == nil && queueEntryAllowed(p, e)
	},
	"GET /api/log": func(p *Principal, raw json.RawMessage) bool {
		var l storage.LogRecord
		return json.Unmarshal(raw, &l) == nil && logRecordAllowed(p, l)
	},
}

// serveScoped runs a request of a domain administrator.
func (a *API) serveScoped(w http.ResponseWriter, r *http.Request, p *Principal) {
	_, pattern := a.mux.Handler(r)
	rule, ok := domainScope[pattern]
	if !ok {
		writeError(w, http.StatusForbidden, errForbidden)
		return
	}
	// The mux sets path values only when it dispatches; the rules need
	// them first.
	for k, v := range pathValues(pattern, r.URL.Path) {
		r.SetPathValue(k, v)
	}
	if err := rule(a, p, r); err != nil {
		if errors.Is(err, errForbidden) {
			writeError(w, http.StatusForbidden, err)
		} else {
			a.fail(w, err)
		}
		return
	}
	filter, ok := listFilters[pattern]
	if !ok {
		a.mux.ServeHTTP(w, r)
		return
	}
	rec := &bufferedWriter{header: http.Header{}, code: http.StatusOK}
	a.mux.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	if rec.code != http.StatusOK {
		w.WriteHeader(rec.code)
		w.Write(rec.buf.Bytes())
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rec.buf.Bytes(), &items); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("filter %s: %w", pattern, err))
		return
	}
	out := []json.RawMessage{}
	for _, it := range items {
		if filter(p, it) {
			out = append(out, it)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type bufferedWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header         { return b.header }
func (b *bufferedWriter) WriteHeader(code int)        { b.code = code }
func (b *bufferedWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }

// pathValues matches a ServeMux pattern ("METHOD /a/{x}/b") against a path
// and returns its wildcards' values (unescaped like the mux does).
func pathValues(pattern, path string) map[string]string {
	_, pat, ok := strings.Cut(pattern, " ")
	if !ok {
		pat = pattern
	}
	ps := strings.Split(strings.Trim(pat, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	out := map[string]string{}
	for i, seg := range ps {
		if !strings.HasPrefix(seg, "{") || !strings.HasSuffix(seg, "}") || i >= len(xs) {
			continue
		}
		name := seg[1 : len(seg)-1]
		v := xs[i]
		if rest, ok := strings.CutSuffix(name, "..."); ok {
			name, v = rest, strings.Join(xs[i:], "/")
		}
		if name == "$" {
			continue
		}
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		out[name] = v
	}
	return out
}
