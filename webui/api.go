// Package webui serves the JSON API (and, later, the admin and webmail
// pages). The CLI, the web pages and the tests all use the same API.
package webui

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/tandemmail/tandem/filter/spamstage"
	"github.com/tandemmail/tandem/protocols/dnsd"
	"github.com/tandemmail/tandem/storage"
)

// APIConfig configures the API.
type APIConfig struct {
	Store  *storage.Store
	Status func() any // the node's status document
	// Cluster is nil on a node that runs without a cluster address.
	Cluster ClusterOps
	// Bouncer and QueueKick come from the outbound engine (nil without one).
	Bouncer   Bouncer
	QueueKick func()
	Logger    *slog.Logger
	// Spam is the node's spam filter (webui/filter.go, quarantine.go);
	// PublicURL the base of release links, Hostname the digest sender's.
	Spam      *spamstage.Engine
	PublicURL func() string
	Hostname  string
	// Network changes interface addresses (nil: not available here).
	Network NetworkConfigurer
	// Certs is the certificate the node serves (nil: none shown).
	Certs *CertSource
	// DNSResolver is the node's resolver HOST:PORT for the DNS lookup tool
	// ("" = /etc/resolv.conf).
	DNSResolver string
	// GlobalAdmin, when set, tells whether a request comes from a global
	// administrator; box-wide routes (network, tools, settings,
	// certificates) answer 403 otherwise. Nil: every caller is (the unix
	// socket is root-only).
	GlobalAdmin func(r *http.Request) bool
	// DNSZones are the built-in DNS server's zones (webui/dns.go; nil: not
	// available on this node).
	DNSZones *dnsd.KVZones
	// Firewall is the mail firewall's block table (webui/firewall.go; nil:
	// not available).
	Firewall FirewallAdmin
}

// API is the admin JSON API.
type API struct {
	cfg APIConfig
	mux *http.ServeMux
}

// NewAPI builds the API router.
func NewAPI(cfg APIConfig) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	m := a.mux
	m.HandleFunc("GET /api/status", a.getStatus)
	m.HandleFunc("GET /api/domains", a.listDomains)
	m.HandleFunc("POST /api/domains", a.addDomain)
	m.HandleFunc("DELETE /api/domains/{name}", a.delDomain)
	m.HandleFunc("PUT /api/domains/{name}/catchall", a.setCatchAll)
	m.HandleFunc("GET /api/accounts", a.listAccounts)
	m.HandleFunc("POST /api/accounts", a.addAccount)
	m.HandleFunc("POST /api/accounts/import", a.importAccounts)
	m.HandleFunc("GET /api/accounts/{addr}", a.getAccount)
	m.HandleFunc("PATCH /api/accounts/{addr}", a.updateAccount)
	m.HandleFunc("DELETE /api/accounts/{addr}", a.delAccount)
	m.HandleFunc("PUT /api/accounts/{addr}/password", a.setPassword)
	m.HandleFunc("GET /api/aliases", a.listAliases)
	m.HandleFunc("POST /api/aliases", a.addAlias)
	m.HandleFunc("DELETE /api/aliases/{addr}", a.delAlias)
	a.routesCluster()
	a.routesQueueAndLog()
	a.routesGateway() // webui/gateway.go
	a.routesFilter()
	a.routesFilterLists()
	a.routesQuarantine()
	a.routesDKIM()
	a.routesSignature()
	a.routesNetwork()
	a.routesTools()
	a.routesSettings()
	a.routesCerts()
	a.routesDNS()
	a.routesOpenAPI()
	a.routesWizard()
	a.routesWebAdmin() // webui/auth_admins.go
	a.routesFirewall() // webui/firewall.go
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP implements http.Handler. A request of a domain administrator
// (a Principal in the context, set by the web login) goes through the
// scope rules of scope.go.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := PrincipalFrom(r.Context()); p != nil && !p.Global {
		a.serveScoped(w, r, p)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// maxBody bounds request bodies (an import of 100,000 accounts fits).
const maxBody = 32 << 20

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// statusOf maps storage errors to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, storage.ErrExists), errors.Is(err, storage.ErrMailboxExists):
		return http.StatusConflict
	case errors.Is(err, storage.ErrNoAccount), errors.Is(err, storage.ErrNoDomain),
		errors.Is(err, storage.ErrNoAlias), errors.Is(err, storage.ErrNoMailbox), errors.Is(err, storage.ErrNoMessage):
		return http.StatusNotFound
	case errors.Is(err, storage.ErrNotEmpty):
		return http.StatusConflict
	case errors.Is(err, storage.ErrNotLeader), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

func (a *API) fail(w http.ResponseWriter, err error) { writeError(w, statusOf(err), err) }

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad JSON body: %w", err))
		return false
	}
	return true
}

func (a *API) getStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.cfg.Status())
}

func (a *API) listDomains(w http.ResponseWriter, r *http.Request) {
	ds, err := a.cfg.Store.Domains()
	if err != nil {
		a.fail(w, err)
		return
	}
	p := PrincipalFrom(r.Context())
	out := []storage.Domain{}
	for _, d := range ds {
		if p.AllowsDomain(d.Name) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) addDomain(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := a.cfg.Store.AddDomain(r.Context(), req.Name); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"name": strings.ToLower(req.Name)})
}

func (a *API) delDomain(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Store.DeleteDomain(r.Context(), r.PathValue("name")); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setCatchAll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Target string `json:"target"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := a.cfg.Store.SetCatchAll(r.Context(), r.PathValue("name"), req.Target); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	if offset < 0 || limit < 0 {
		writeError(w, http.StatusBadRequest, errors.New("offset and limit must not be negative"))
		return
	}
	domain := q.Get("domain")
	if p := PrincipalFrom(r.Context()); p != nil && !p.Global {
		// A domain administrator lists one of their domains at a time.
		if domain == "" && len(p.Domains) == 1 {
			domain = p.Domains[0]
		}
		if domain == "" {
			writeError(w, http.StatusBadRequest, errors.New("give domain=: you administer several domains"))
			return
		}
		if !p.AllowsDomain(domain) {
			writeError(w, http.StatusForbidden, errForbidden)
			return
		}
	}
	accts, total, err := a.cfg.Store.Accounts(storage.AccountQuery{Domain: domain,
		Search: q.Get("search"), Offset: offset, Limit: limit})
	if err != nil {
		a.fail(w, err)
		return
	}
	if accts == nil {
		accts = []storage.Account{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "accounts": accts})
}

type accountReq struct {
	Address     string `json:"address"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
	Quota       string `json:"quota"` // "", "500M", "2G", bytes
	Admin       bool   `json:"admin"`
}

func (a *API) addAccount(w http.ResponseWriter, r *http.Request) {
	var req accountReq
	if !decode(w, r, &req) {
		return
	}
	if p := PrincipalFrom(r.Context()); !p.AllowsAddress(req.Address) || req.Admin && !RequestIsGlobal(r) {
		writeError(w, http.StatusForbidden, errForbidden)
		return
	}
	quota, err := ParseSize(req.Quota)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	acct, err := a.cfg.Store.AddAccount(r.Context(), storage.NewAccount{Address: req.Address,
		Password: req.Password, DisplayName: req.DisplayName, QuotaBytes: quota, Admin: req.Admin})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, acct)
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) {
	acct, err := a.cfg.Store.AccountByAddress(r.PathValue("addr"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

func (a *API) updateAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DisplayName *string `json:"display_name"`
		Quota       *string `json:"quota"`
		Admin       *bool   `json:"admin"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Admin != nil && !RequestIsGlobal(r) {
		writeError(w, http.StatusForbidden, errors.New("forbidden: only a global administrator grants or takes admin rights"))
		return
	}
	u := storage.AccountUpdate{DisplayName: req.DisplayName, Admin: req.Admin}
	if req.Quota != nil {
		q, err := ParseSize(*req.Quota)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		u.QuotaBytes = &q
	}
	acct, err := a.cfg.Store.UpdateAccount(r.Context(), r.PathValue("addr"), u)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

func (a *API) delAccount(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Store.DeleteAccount(r.Context(), r.PathValue("addr")); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := a.cfg.Store.SetPassword(r.Context(), r.PathValue("addr"), req.Password); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listAliases(w http.ResponseWriter, r *http.Request) {
	al, err := a.cfg.Store.Aliases(r.URL.Query().Get("domain"))
	if err != nil {
		a.fail(w, err)
		return
	}
	p := PrincipalFrom(r.Context())
	out := []storage.Alias{}
	for _, x := range al {
		if p.AllowsAddress(x.Address) {
			out = append(out, x)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) addAlias(w http.ResponseWriter, r *http.Request) {
	var req storage.Alias
	if !decode(w, r, &req) {
		return
	}
	if !PrincipalFrom(r.Context()).AllowsAddress(req.Address) {
		writeError(w, http.StatusForbidden, errForbidden)
		return
	}
	if err := a.cfg.Store.AddAlias(r.Context(), req.Address, req.Targets...); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, req)
}

func (a *API) delAlias(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Store.DeleteAlias(r.Context(), r.PathValue("addr")); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ParseSize reads a byte count such as "500M", "2G", "1024" or "" (0).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	if s == "" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	s = strings.TrimSuffix(s, "B")
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "T"):
		mult, s = 1<<40, strings.TrimSuffix(s, "T")
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<53 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional K, M, G or T", s)
	}
	return int64(n * float64(mult)), nil
}

// ImportLine is one result line of an account import (NDJSON).
type ImportLine struct {
	Total   int    `json:"total,omitempty"` // first line only: number of accounts to import
	Line    int    `json:"line,omitempty"`
	Address string `json:"address,omitempty"`
	Status  string `json:"status,omitempty"` // created, exists, error
	Error   string `json:"error,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Created int    `json:"created,omitempty"`
	Failed  int    `json:"failed,omitempty"`
}

type importRow struct {
	line                         int
	addr, pw, name, quota, error string
}

// parseImport reads the SPEC M1 text/CSV format: one account per line,
// "address, password, display name, quota"; blank lines and # comments are
// skipped, as is a header line starting with "address".
func parseImport(r io.Reader) ([]importRow, error) {
	var rows []importRow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cr := csv.NewReader(strings.NewReader(text))
		cr.TrimLeadingSpace = true
		cr.FieldsPerRecord = -1
		fields, err := cr.Read()
		row := importRow{line: n}
		if err != nil {
			row.error = fmt.Sprintf("cannot parse line: %v", err)
			rows = append(rows, row)
			continue
		}
		if n == 1 && strings.EqualFold(strings.TrimSpace(fields[0]), "address") {
			continue
		}
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		switch {
		case len(fields) < 2:
			row.error = "want at least address and password"
		case len(fields) > 4:
			row.error = fmt.Sprintf("want at most 4 fields (address, password, display name, quota), got %d", len(fields))
		}
		fields = append(fields, "", "", "", "")
		row.addr, row.pw, row.name, row.quota = fields[0], fields[1], fields[2], fields[3]
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return rows, fmt.Errorf("line %d: %w", n+1, err)
	}
	return rows, nil
}

func (a *API) importAccounts(w http.ResponseWriter, r *http.Request) {
	rows, err := parseImport(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	emit := func(l ImportLine) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	emit(ImportLine{Total: len(rows)})
	created, failed := 0, 0
	work := make(chan importRow)
	var wg sync.WaitGroup
	// Password hashing dominates; one worker per core.
	for i := 0; i < max(1, runtime.NumCPU()); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range work {
				res := ImportLine{Line: row.line, Address: row.addr}
				if row.error == "" && !PrincipalFrom(r.Context()).AllowsAddress(row.addr) {
					row.error = "forbidden: not one of your domains"
				}
				if row.error == "" {
					if q, err := ParseSize(row.quota); err != nil {
						row.error = err.Error()
					} else if _, err := a.cfg.Store.AddAccount(r.Context(), storage.NewAccount{Address: row.addr,
						Password: row.pw, DisplayName: row.name, QuotaBytes: q}); err != nil {
						if errors.Is(err, storage.ErrExists) {
							res.Status = "exists"
						}
						row.error = err.Error()
					}
				}
				mu.Lock()
				if row.error == "" {
					res.Status = "created"
					created++
				} else {
					if res.Status == "" {
						res.Status = "error"
					}
					res.Error = row.error
					failed++
				}
				mu.Unlock()
				emit(res)
			}
		}()
	}
	for _, row := range rows {
		select {
		case work <- row:
		case <-r.Context().Done():
		}
	}
	close(work)
	wg.Wait()
	emit(ImportLine{Done: true, Created: created, Failed: failed})
}
