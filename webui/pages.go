package webui

import (
	"context"
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// The web admin's templates, styles, script and message catalogs are
// embedded, so `go build` is the whole build (DESIGN §7).
//
//go:embed web/templates/*.html web/static/* web/i18n/*.json
var webFS embed.FS

// WebConfig configures the web admin on the node's HTTP(S) listeners.
type WebConfig struct {
	API     *API // the same JSON API the CLI uses, served under /api
	Store   *storage.Store
	Logger  *slog.Logger
	Version string
	// Status is the node's status document (dashboard); Cluster the
	// cluster status for the cluster page (nil: a node without a cluster).
	Status  func() any
	Cluster func(ctx context.Context) any
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// CaptchaAfter failed logins from one IP ask a captcha (default 3);
	// LockAfter failures block the IP in the firewall for LockFor
	// (defaults 10 and 1h).
	CaptchaAfter, LockAfter int
	LockFor                 time.Duration
}

// Page is one page of the web admin (see web/README.md).
type Page struct {
	Name  string // template web/templates/<Name>.html (defines "content")
	Path  string // URL path, e.g. "/domains"
	Title string // i18n key of the title
	// NavKey, if set, puts the page in the navigation under that i18n key.
	NavKey string
	// GlobalOnly pages are refused to domain administrators.
	GlobalOnly bool
	// Data returns the page's own data (.Data in the template).
	Data func(r *http.Request) (any, error)
	// Public pages need no login (the login page).
	Public bool
}

// Web serves the admin pages.
type Web struct {
	cfg    WebConfig
	cats   catalogs
	static http.Handler
	guard  *loginGuard

	mu    sync.Mutex
	pages []Page
	tmpl  map[string]*template.Template
}

// NewWeb loads the embedded templates and catalogs.
func NewWeb(cfg WebConfig) (*Web, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.CaptchaAfter <= 0 {
		cfg.CaptchaAfter = 3
	}
	if cfg.LockAfter <= 0 {
		cfg.LockAfter = 10
	}
	if cfg.LockFor <= 0 {
		cfg.LockFor = time.Hour
	}
	cats, err := loadCatalogs(webFS)
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(webFS, "web/static")
	wb := &Web{cfg: cfg, cats: cats, static: http.StripPrefix("/static/", http.FileServerFS(sub)),
		guard: newLoginGuard(), tmpl: map[string]*template.Template{}}
	for _, p := range wb.builtinPages() {
		if err := wb.AddPage(p); err != nil {
			return nil, err
		}
	}
	// The answer to a page the visitor may not see: the layout and the
	// message only, never the page's own forms.
	t, err := template.New("forbidden").Funcs(tmplFuncs).ParseFS(webFS, "web/templates/layout.html", "web/templates/forbidden.html")
	if err != nil {
		return nil, fmt.Errorf("web page forbidden: %w", err)
	}
	wb.tmpl["forbidden"] = t
	return wb, nil
}

var tmplFuncs = template.FuncMap{
	"bytes": func(n uint64) string {
		const unit = 1024
		if n < unit {
			return fmt.Sprintf("%d B", n)
		}
		div, exp := uint64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
	},
	"ts": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"ms": func(d time.Duration) int64 { return d.Milliseconds() },
}

// AddPage registers a page; its template is parsed with the layout.
func (wb *Web) AddPage(p Page) error {
	t, err := template.New(p.Name).Funcs(tmplFuncs).ParseFS(webFS, "web/templates/layout.html", "web/templates/"+p.Name+".html")
	if err != nil {
		return fmt.Errorf("web page %s: %w", p.Name, err)
	}
	wb.mu.Lock()
	defer wb.mu.Unlock()
	wb.tmpl[p.Name] = t
	wb.pages = append(wb.pages, p)
	return nil
}

func (wb *Web) hasPage(name string) bool {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	_, ok := wb.tmpl[name]
	return ok
}

type navItem struct{ Href, Key, Page string }

// pageData is what every template sees.
type pageData struct {
	Lang, Title, Page, CSRF, Version, Flash string
	User                                    *Principal
	Nav                                     []navItem
	Langs                                   []langInfo
	Data                                    any
	cats                                    catalogs
}

// T translates a message key into the page's language.
func (d *pageData) T(key string) string { return d.cats.text(d.Lang, key) }

// securityHeaders: a strict CSP (no inline script or style; RFC-less but
// CSP Level 3), no framing, no sniffing, no referrer leaks.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

func (wb *Web) render(w http.ResponseWriter, r *http.Request, code int, p Page, user *Principal, csrf, flash string, data any) {
	wb.mu.Lock()
	t := wb.tmpl[p.Name]
	var nav []navItem
	for _, q := range wb.pages {
		if q.NavKey != "" && (!q.GlobalOnly || user == nil || user.Global) {
			nav = append(nav, navItem{Href: q.Path, Key: q.NavKey, Page: q.Name})
		}
	}
	wb.mu.Unlock()
	d := &pageData{Lang: pickLang(w, r), Title: p.Title, Page: p.Name, CSRF: csrf, Version: wb.cfg.Version,
		Flash: flash, User: user, Nav: nav, Langs: languages, Data: data, cats: wb.cats}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := t.ExecuteTemplate(w, "layout", d); err != nil {
		wb.cfg.Logger.Warn("web page", "page", p.Name, "err", err)
	}
}

// auth resolves the logged-in principal or answers: pages redirect to
// /login, the API answers 401 JSON.
func (wb *Web) auth(w http.ResponseWriter, r *http.Request, api bool) (*Principal, session, bool) {
	_, s, err := wb.sessionOf(r)
	var p *Principal
	if err == nil {
		var acct storage.Account
		if acct, err = wb.cfg.Store.AccountByAddress(s.Address); err == nil {
			p, err = principalFor(wb.cfg.Store, acct)
		}
	}
	if err != nil {
		if api {
			writeError(w, http.StatusUnauthorized, errors.New("log in first: POST /login"))
		} else {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		}
		return nil, s, false
	}
	return p, s, true
}

// Mount adds the web admin's routes to the listener's mux: /login,
// /logout, /static/, the pages and the JSON API under /api/ (behind login
// and CSRF checks).
func (wb *Web) Mount(mux *http.ServeMux) {
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=300")
		wb.static.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /login", wb.remote(wb.loginPage))
	mux.HandleFunc("POST /login", wb.remote(wb.login))
	mux.HandleFunc("POST /logout", wb.remote(wb.logout))
	mux.HandleFunc("/api/", wb.remote(wb.serveAPI))
	mux.HandleFunc("GET /accounts.csv", wb.remote(wb.exportAccounts))
	wb.mu.Lock()
	pages := append([]Page(nil), wb.pages...)
	wb.mu.Unlock()
	for _, p := range pages {
		if p.Public {
			continue
		}
		path := p.Path
		if path == "/" {
			path = "/{$}"
		}
		mux.HandleFunc("GET "+path, wb.remote(func(w http.ResponseWriter, r *http.Request) { wb.servePage(w, r, p) }))
	}
}

// remote applies the remote-management switches (SPEC W1): with HTTP or
// HTTPS admin access turned off, the login, the pages and the API answer
// 403 to everyone but loopback and the unix socket.
func (wb *Web) remote(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if wb.cfg.API != nil && !wb.cfg.API.RemoteAdminAllowed(r) {
			scheme := "HTTP"
			if r.TLS != nil {
				scheme = "HTTPS"
			}
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeError(w, http.StatusForbidden, fmt.Errorf("remote administration over %s is turned off on this system", scheme))
				return
			}
			http.Error(w, "Remote administration over "+scheme+" is turned off on this system.", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (wb *Web) servePage(w http.ResponseWriter, r *http.Request, p Page) {
	user, s, ok := wb.auth(w, r, false)
	if !ok {
		return
	}
	if p.GlobalOnly && !user.Global {
		wb.render(w, r, http.StatusForbidden, Page{Name: "forbidden", Title: p.Title}, user, s.CSRF, wb.cats.text(pickLang(w, r), "error.forbidden"), nil)
		return
	}
	if p.Path == "/" && user.Global && !wb.SetupDone() && wb.hasPage("wizard") {
		// A fresh box starts with the setup wizard (SPEC M1) until an
		// admin finishes or skips it.
		target := "/setup"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery // keeps ?lang=
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	var data any
	if p.Data != nil {
		var err error
		data, err = p.Data(r.WithContext(WithPrincipal(r.Context(), user)))
		if err != nil {
			wb.render(w, r, http.StatusInternalServerError, p, user, s.CSRF, err.Error(), nil)
			return
		}
	}
	wb.render(w, r, http.StatusOK, p, user, s.CSRF, "", data)
}

// ServeClusterPage serves the cluster status page (SPEC W4) in the admin
// layout at /cluster: public and read-only as it always was (every node
// answers locally, which is what one wants during a failover), with the
// navigation when the visitor is logged in. It reloads every 5 s.
func (wb *Web) ServeClusterPage(w http.ResponseWriter, r *http.Request) {
	var user *Principal
	var csrf string
	if _, s, err := wb.sessionOf(r); err == nil {
		if acct, err := wb.cfg.Store.AccountByAddress(s.Address); err == nil {
			if p, err := principalFor(wb.cfg.Store, acct); err == nil && p.Global {
				user, csrf = p, s.CSRF
			}
		}
	}
	var data any
	if wb.cfg.Cluster != nil {
		data = wb.cfg.Cluster(r.Context())
	}
	wb.render(w, r, http.StatusOK, Page{Name: "cluster", Title: "cluster.title"}, user, csrf, "", data)
}

// serveAPI runs the JSON API for a logged-in admin. State-changing
// requests need the session's CSRF token (X-CSRF-Token header).
func (wb *Web) serveAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	user, s, ok := wb.auth(w, r, true)
	if !ok {
		return
	}
	if !safeMethod(r.Method) && !csrfOK(r, s) {
		writeError(w, http.StatusForbidden, errors.New("missing or wrong CSRF token: send the X-CSRF-Token header"))
		return
	}
	wb.cfg.API.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), user)))
}

// exportAccounts streams the accounts the admin may see as CSV in the
// import format (address, password left empty, display name, quota).
func (wb *Web) exportAccounts(w http.ResponseWriter, r *http.Request) {
	user, _, ok := wb.auth(w, r, false)
	if !ok {
		return
	}
	ds, err := wb.cfg.Store.Domains()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="accounts.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"address", "password", "display_name", "quota_bytes"})
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	for _, d := range ds {
		if !user.AllowsDomain(d.Name) {
			continue
		}
		for off := 0; ; off += 1000 {
			accts, _, err := wb.cfg.Store.Accounts(storage.AccountQuery{Domain: d.Name, Offset: off, Limit: 1000})
			if err != nil || len(accts) == 0 {
				break
			}
			for _, a := range accts {
				cw.Write([]string{a.Address, "", csvSafe(a.DisplayName), fmt.Sprint(a.QuotaBytes)})
			}
		}
	}
	cw.Flush()
}

// csvSafe defuses spreadsheet formulas in exported text (OWASP CSV
// injection): a leading = + - @ becomes text.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}
