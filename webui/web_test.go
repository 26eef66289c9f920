package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter/firewall"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

type webEnv struct {
	t     *testing.T
	store *storage.Store
	srv   *httptest.Server
	web   *Web
}

// newGuardForTest forgets the failure counts (as a restart would).
func (e *webEnv) newGuardForTest() { e.web.guard = newLoginGuard() }

// newWebEnv: domains a.example and b.example, a global admin
// root@a.example, a domain admin da@a.example (of a.example only) and
// plain users in both domains.
func newWebEnv(t *testing.T, cfg WebConfig) *webEnv {
	t.Helper()
	s := storetest.New(t)
	ctx := context.Background()
	storetest.AddAccount(t, s, "user@a.example", "pw-a")
	storetest.AddAccount(t, s, "user@b.example", "pw-b")
	storetest.AddAccount(t, s, "da@a.example", "pw-da")
	if _, err := s.AddAccount(ctx, storage.NewAccount{Address: "root@a.example", Password: "pw-root", Admin: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVPutValue(ctx, nsDomainAdmins, "da@a.example", []byte(`["a.example"]`)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias(ctx, "list@b.example", "user@b.example"); err != nil {
		t.Fatal(err)
	}
	api := NewAPI(APIConfig{Store: s, Status: func() any { return map[string]any{"DiskFree": uint64(1 << 30)} },
		GlobalAdmin: RequestIsGlobal})
	cfg.API, cfg.Store = api, s
	wb, err := NewWeb(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	wb.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &webEnv{t: t, store: s, srv: srv, web: wb}
}

type webClient struct {
	*http.Client
	env  *webEnv
	csrf string
}

func (e *webEnv) client() *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}, env: e}
}

var hiddenField = regexp.MustCompile(`name="(csrf|captcha_id)" value="([^"]*)"`)
var question = regexp.MustCompile(`(\d+) (?:\+|&#43;) (\d+) = \?`)
var metaCSRF = regexp.MustCompile(`<meta name="csrf-token" content="([0-9a-f]*)">`)

// login fills in the login form; captcha answers the question right
// when asked (wrongCaptcha: wrong). Returns the POST's status and body.
func (c *webClient) login(addr, pw string, wrongCaptcha bool) (int, string) {
	c.env.t.Helper()
	body := c.get("/login", 200)
	form := url.Values{"address": {addr}, "password": {pw}}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], m[2])
	}
	if m := question.FindStringSubmatch(body); m != nil {
		var x, y int
		fmt.Sscan(m[1], &x)
		fmt.Sscan(m[2], &y)
		if wrongCaptcha {
			x++
		}
		form.Set("captcha", fmt.Sprint(x+y))
	}
	resp, err := c.PostForm(c.env.srv.URL+"/login", form)
	if err != nil {
		c.env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		landing := "/"
		if code, _ := c.do("GET", "/", "", false); code == http.StatusSeeOther {
			landing = "/setup" // a fresh box opens the setup wizard
		}
		page := c.get(landing, 200)
		m := metaCSRF.FindStringSubmatch(page)
		if m == nil || m[1] == "" {
			c.env.t.Fatalf("no CSRF token on the dashboard:\n%s", page)
		}
		c.csrf = m[1]
	}
	return resp.StatusCode, string(b)
}

func (c *webClient) do(method, path, body string, withCSRF bool) (int, string) {
	c.env.t.Helper()
	req, _ := http.NewRequest(method, c.env.srv.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if withCSRF {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.Do(req)
	if err != nil {
		c.env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *webClient) get(path string, want int) string {
	c.env.t.Helper()
	code, body := c.do("GET", path, "", false)
	if code != want {
		c.env.t.Fatalf("GET %s: %d, want %d: %s", path, code, want, body)
	}
	return body
}

func TestWebLoginSessionAndCSRF(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	c := e.client()
	// Not logged in: pages redirect, the API answers 401 JSON.
	if code, _ := c.do("GET", "/domains", "", false); code != http.StatusSeeOther {
		t.Errorf("page without login: %d", code)
	}
	if code, body := c.do("GET", "/api/domains", "", false); code != 401 || !strings.Contains(body, `"error"`) {
		t.Errorf("API without login: %d %s", code, body)
	}
	// A plain user is not an administrator.
	if code, body := c.login("user@a.example", "pw-a", false); code != 401 || !strings.Contains(body, "not an administrator") {
		t.Errorf("plain user login: %d", code)
	}
	// Login without the form's double-submit token is refused.
	resp, err := c.PostForm(e.srv.URL+"/login", url.Values{"address": {"root@a.example"}, "password": {"pw-root"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without form token: %d", resp.StatusCode)
	}
	if code, body := c.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Fatalf("admin login: %d %s", code, body)
	}
	u, _ := url.Parse(e.srv.URL)
	var sid string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			sid = ck.Value
		}
	}
	if len(sid) != 64 {
		t.Fatalf("session cookie %q: want 256 random bits in hex", sid)
	}
	// Stored hashed, never the id itself.
	if _, _, ok, _ := e.store.KVGet(nsSessions, sid); ok {
		t.Error("session stored under its plain id")
	}
	h := sha256.Sum256([]byte(sid))
	if _, _, ok, _ := e.store.KVGet(nsSessions, hex.EncodeToString(h[:])); !ok {
		t.Error("session not in KV web.sessions under its hash")
	}
	// CSRF: a state-changing request without (or with a wrong) token is 403.
	if code, _ := c.do("POST", "/api/domains", `{"name":"c.example"}`, false); code != 403 {
		t.Errorf("POST without CSRF token: %d", code)
	}
	good := c.csrf
	c.csrf = strings.Repeat("0", 64)
	if code, _ := c.do("POST", "/api/domains", `{"name":"c.example"}`, true); code != 403 {
		t.Errorf("POST with a wrong CSRF token: %d", code)
	}
	c.csrf = good
	if code, body := c.do("POST", "/api/domains", `{"name":"c.example"}`, true); code != 201 {
		t.Errorf("POST with the token: %d %s", code, body)
	}
	// Every page renders for the global admin, with a strict CSP.
	for _, p := range []string{"/", "/domains", "/accounts", "/aliases", "/queue", "/log", "/status/cluster", "/security"} {
		req, _ := http.NewRequest("GET", e.srv.URL+p, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("page %s: %d, CSP %q", p, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
		}
	}
	// Export as CSV.
	if csv := c.get("/accounts.csv", 200); !strings.Contains(csv, "user@b.example") {
		t.Errorf("export: %s", csv)
	}
	// Logout needs the token and ends the session everywhere.
	if code, _ := c.do("POST", "/logout", "", false); code != 403 {
		t.Errorf("logout without token: %d", code)
	}
	form := url.Values{"csrf": {c.csrf}}
	resp, err = c.PostForm(e.srv.URL+"/logout", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, _, ok, _ := e.store.KVGet(nsSessions, hex.EncodeToString(h[:])); ok {
		t.Error("session still stored after logout")
	}
}

func TestWebSessionCookieFlags(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "https://x/", nil)
	req.TLS = nil
	setSessionCookie(rec, req, "abc", 60)
	ck := rec.Result().Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure {
		t.Errorf("plain HTTP cookie: %+v", ck)
	}
	req = httptest.NewRequest("GET", "https://x/", nil) // sets req.TLS
	rec = httptest.NewRecorder()
	setSessionCookie(rec, req, "abc", 60)
	if ck := rec.Result().Cookies()[0]; !ck.Secure || !ck.HttpOnly {
		t.Errorf("HTTPS cookie not Secure: %+v", ck)
	}
	_ = e
}

func TestWebSessionExpiry(t *testing.T) {
	e := newWebEnv(t, WebConfig{SessionTTL: time.Second})
	c := e.client()
	if code, _ := c.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Fatal("login failed")
	}
	c.get("/api/domains", 200)
	time.Sleep(2100 * time.Millisecond) // expiry has 1 s resolution (unix seconds)
	if code, _ := c.do("GET", "/api/domains", "", false); code != 401 {
		t.Errorf("expired session: %d, want 401", code)
	}
}

func TestWebCaptchaAndLockout(t *testing.T) {
	e := newWebEnv(t, WebConfig{CaptchaAfter: 3, LockAfter: 6, LockFor: time.Hour})
	c := e.client()
	for i := 1; i <= 3; i++ {
		if code, body := c.login("root@a.example", "wrong", false); code != 401 || strings.Contains(body, "captcha") != (i >= 3) {
			t.Fatalf("failure %d: %d, captcha shown=%v", i, code, strings.Contains(body, "captcha"))
		}
	}
	// With a captcha, a wrong answer fails even with the right password.
	if code, _ := c.login("root@a.example", "pw-root", true); code != 401 {
		t.Fatalf("wrong captcha accepted: %d", code)
	}
	// The right answer and password log in.
	if code, _ := c.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Fatalf("right captcha refused: %d", code)
	}
	// Six failures block the address in the firewall namespace.
	c2 := e.client()
	for i := 0; i < 6; i++ {
		c2.login("root@a.example", "wrong", false)
	}
	v, _, ok, _ := e.store.KVGet(nsFirewall, "ip:127.0.0.1/32")
	if !ok {
		t.Fatal("no firewall.blocks entry after repeated failures")
	}
	var b firewall.Block
	if err := json.Unmarshal(v, &b); err != nil || b.Reason != "web login brute force" || b.Hits < 6 || !b.Expires.After(time.Now()) {
		t.Errorf("block %s (%v)", v, err)
	}
	// A block the mail firewall wrote for a whole subnet counts too, and an
	// expired one does not.
	c3 := e.client()
	e.store.KVDeleteKey(t.Context(), nsFirewall, "ip:127.0.0.1/32")
	old, _ := json.Marshal(firewall.Block{Key: "ip:127.0.0.0/8", Reason: "smtp auth", Created: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)})
	e.store.KVPutValue(t.Context(), nsFirewall, "ip:127.0.0.0/8", old)
	e.newGuardForTest()
	if code, _ := c3.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Errorf("expired subnet block refused a login: %d", code)
	}
	cur, _ := json.Marshal(firewall.Block{Key: "ip:127.0.0.0/8", Reason: "smtp auth", Created: time.Now()})
	e.store.KVPutValue(t.Context(), nsFirewall, "ip:127.0.0.0/8", cur)
	if code, _ := c3.login("root@a.example", "pw-root", false); code != http.StatusForbidden {
		t.Errorf("subnet block from the mail firewall not honoured: %d", code)
	}
	if code, body := c2.login("root@a.example", "pw-root", false); code != 403 || !strings.Contains(body, "blocked") {
		t.Errorf("blocked address could log in: %d", code)
	}
}

// TestWebDomainAdminScope: a domain administrator of a.example cannot
// read or write b.example data through any API route, and gets 403 for
// every box-wide route.
func TestWebDomainAdminScope(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	c := e.client()
	if code, body := c.login("da@a.example", "pw-da", false); code != http.StatusSeeOther {
		t.Fatalf("domain admin login: %d %s", code, body)
	}
	cases := []struct {
		method, path, body string
		want               int
		notContain         string
	}{
		{"GET", "/api/domains", "", 200, "b.example"},
		{"POST", "/api/domains", `{"name":"d.example"}`, 403, ""},
		{"DELETE", "/api/domains/b.example", "", 403, ""},
		{"PUT", "/api/domains/b.example/catchall", `{"target":"da@a.example"}`, 403, ""},
		{"GET", "/api/accounts?domain=b.example", "", 403, ""},
		{"GET", "/api/accounts", "", 200, "b.example"},
		{"GET", "/api/accounts?search=user", "", 200, "b.example"},
		{"POST", "/api/accounts", `{"address":"x@b.example","password":"pw"}`, 403, ""},
		{"POST", "/api/accounts", `{"address":"x@a.example","password":"pw","admin":true}`, 403, ""},
		{"GET", "/api/accounts/user@b.example", "", 403, ""},
		{"PATCH", "/api/accounts/user@b.example", `{"display_name":"pwned"}`, 403, ""},
		{"PATCH", "/api/accounts/user@a.example", `{"admin":true}`, 403, ""},
		{"DELETE", "/api/accounts/user@b.example", "", 403, ""},
		{"PUT", "/api/accounts/user@b.example/password", `{"password":"x"}`, 403, ""},
		{"GET", "/api/accounts/user@b.example/domains", "", 403, ""},
		{"PUT", "/api/accounts/da@a.example/domains", `{"domains":["b.example"]}`, 403, ""},
		{"GET", "/api/aliases", "", 200, "b.example"},
		{"GET", "/api/aliases?domain=b.example", "", 200, "b.example"},
		{"POST", "/api/aliases", `{"address":"x@b.example","targets":["da@a.example"]}`, 403, ""},
		{"DELETE", "/api/aliases/list@b.example", "", 403, ""},
		{"GET", "/api/status", "", 403, ""},
		{"GET", "/api/cluster", "", 403, ""},
		// Own domain works.
		{"GET", "/api/accounts/user@a.example", "", 200, ""},
		{"PATCH", "/api/accounts/user@a.example", `{"display_name":"Alice"}`, 200, ""},
		{"POST", "/api/aliases", `{"address":"team@a.example","targets":["user@a.example"]}`, 201, ""},
	}
	for _, tc := range cases {
		code, body := c.do(tc.method, tc.path, tc.body, true)
		if code != tc.want || tc.notContain != "" && strings.Contains(body, tc.notContain) {
			t.Errorf("%s %s: %d %s; want %d without %q", tc.method, tc.path, code, body, tc.want, tc.notContain)
		}
	}
	// Import: rows of other domains fail one by one.
	code, body := c.do("POST", "/api/accounts/import", "n1@a.example,pw\nn2@b.example,pw\n", true)
	if code != 200 || !strings.Contains(body, `"created":1`) || !strings.Contains(body, "not one of your domains") {
		t.Errorf("import: %d %s", code, body)
	}
	if _, err := e.store.AccountByAddress("n2@b.example"); err == nil {
		t.Error("domain admin created an account in another domain")
	}
	if a, _ := e.store.AccountByAddress("user@b.example"); a.DisplayName == "pwned" {
		t.Error("domain admin changed another domain's account")
	}
	// Every other registered route is refused with 403 JSON.
	for route := range registeredRoutes(t) {
		if _, ok := domainScope[route]; ok {
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{addr}", "user@b.example", "{name}", "b.example", "{id}", "x", "{$}", "").Replace(path)
		path = regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "x")
		code, body := c.do(method, path, "", true)
		if code != 403 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s (%s %s): %d %s; want 403 for a domain admin", route, method, path, code, body)
		}
	}
	// Scoped pages: the cluster page is for global admins only.
	if code, _ := c.do("GET", "/status/cluster", "", false); code != 403 {
		t.Errorf("cluster page for a domain admin: %d", code)
	}
	if csv := c.get("/accounts.csv", 200); strings.Contains(csv, "b.example") {
		t.Errorf("export leaks another domain: %s", csv)
	}
}

// TestWebI18nCatalogs: every key used in templates and Go exists in all
// three catalogs, no catalog has extra or missing keys, and the Chinese
// ones are translations, not English copies.
func TestWebI18nCatalogs(t *testing.T) {
	cats, err := loadCatalogs(webFS)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	tmpls, _ := filepath.Glob("web/templates/*.html")
	keyInTmpl := regexp.MustCompile(`\.T "([^"]+)"`)
	for _, f := range tmpls {
		b, _ := os.ReadFile(f)
		for _, m := range keyInTmpl.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	gosrc, _ := filepath.Glob("*.go")
	keyInGo := regexp.MustCompile(`(?:Title|NavKey): "([^"]+)"|"((?:login|error)\.[a-z_]+)"`)
	for _, f := range gosrc {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, m := range keyInGo.FindAllStringSubmatch(string(b), -1) {
			used[m[1]+m[2]] = true
		}
	}
	if len(used) < 50 {
		t.Fatalf("found only %d keys: the scan no longer matches", len(used))
	}
	for k := range used {
		for _, l := range languages {
			if _, ok := cats[l.Code][k]; !ok {
				t.Errorf("key %q missing in %s.json", k, l.Code)
			}
		}
	}
	same := 0
	for k, en := range cats["en"] {
		for _, l := range languages[1:] {
			if _, ok := cats[l.Code][k]; !ok {
				t.Errorf("%s.json lacks %q", l.Code, k)
			}
			if cats[l.Code][k] == en {
				same++
			}
		}
	}
	for _, l := range languages[1:] {
		for k := range cats[l.Code] {
			if _, ok := cats["en"][k]; !ok {
				t.Errorf("%s.json has extra key %q", l.Code, k)
			}
		}
	}
	if same > 0 {
		t.Errorf("%d Chinese messages are English copies", same)
	}
}

func TestWebLanguageSwitch(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	c := e.client()
	cases := []struct{ query, accept, want string }{
		{"", "", "Log in"},
		{"", "zh-TW,zh;q=0.9,en;q=0.5", "登入"},
		{"", "zh-CN", "登录"},
		{"?lang=zh-TW", "en", "登入"},
		{"", "en", "登入"}, // the cookie set by ?lang= sticks
		{"?lang=en", "zh-CN", "Log in"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", e.srv.URL+"/login"+tc.query, nil)
		if tc.accept != "" {
			req.Header.Set("Accept-Language", tc.accept)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "<title>"+tc.want) {
			t.Errorf("lang %q accept %q: title not %q", tc.query, tc.accept, tc.want)
		}
	}
}

func TestWebEscapesInput(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	c := e.client()
	_, body := c.login(`"><script>alert(1)</script>@x`, "pw", false)
	if strings.Contains(body, "<script>alert") {
		t.Error("login echoes the address unescaped")
	}
}

func TestMatchLang(t *testing.T) {
	for in, want := range map[string]string{"en": "en", "en-GB": "en", "zh-Hant-TW": "zh-TW", "zh_TW": "zh-TW",
		"zh-HK": "zh-TW", "zh": "zh-CN", "zh-Hans": "zh-CN", "fr": "", "": ""} {
		if got := matchLang(in); got != want {
			t.Errorf("matchLang(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzPickLang(f *testing.F) {
	f.Add("zh-TW,zh;q=0.9", "zh-CN")
	f.Add(",,;;", "\x00")
	f.Fuzz(func(t *testing.T, accept, q string) {
		req := httptest.NewRequest("GET", "/?lang="+url.QueryEscape(q), nil)
		req.Header.Set("Accept-Language", accept)
		got := pickLang(httptest.NewRecorder(), req)
		if !slices.ContainsFunc(languages, func(l langInfo) bool { return l.Code == got }) {
			t.Fatalf("pickLang = %q", got)
		}
	})
}

func FuzzLoginForm(f *testing.F) {
	g := newLoginGuard()
	f.Add("abc", "12")
	f.Fuzz(func(t *testing.T, id, answer string) {
		if g.solve(id, answer) {
			t.Fatal("solved a captcha that was never asked")
		}
		if _, err := blockKey(id); err == nil {
			// A parsable address must give a /32 or /128 key.
			k, _ := blockKey(id)
			if !strings.HasSuffix(k, "/32") && !strings.HasSuffix(k, "/128") {
				t.Fatalf("blockKey(%q) = %q", id, k)
			}
		}
	})
}

func TestPathValues(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          map[string]string
	}{
		{"GET /api/accounts/{addr}", "/api/accounts/a%40b.example", map[string]string{"addr": "a@b.example"}},
		{"PUT /api/domains/{name}/catchall", "/api/domains/b.example/catchall", map[string]string{"name": "b.example"}},
		{"GET /api/files/{rest...}", "/api/files/a/b", map[string]string{"rest": "a/b"}},
		{"GET /api/status", "/api/status", map[string]string{}},
	}
	for _, c := range cases {
		got := pathValues(c.pattern, c.path)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("pathValues(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}

func FuzzPathValues(f *testing.F) {
	f.Add("GET /api/accounts/{addr}", "/api/accounts/x%2")
	f.Add("DELETE /api/queue/{id}", "//..//")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		for k := range pathValues(pattern, path) {
			if !strings.Contains(pattern, "{"+k) {
				t.Fatalf("value %q not in pattern %q", k, pattern)
			}
		}
	})
}

// TestWebClusterPage: /cluster in the layout, public, shows the VIP
// holder and the failover history (fields as node.ClusterStatus).
func TestWebClusterPage(t *testing.T) {
	type member struct {
		ID, Addr, Role, Health string
		Self, Witness          bool
		AppliedIndex, Lag      uint64
		DiskFree               uint64
	}
	type event struct {
		Time     time.Time
		Kind     string
		Term     uint64
		Leader   string
		Downtime time.Duration
	}
	st := struct {
		Node, Leader, VIP, VIPHeld string
		Term                       uint64
		Quorum                     int
		Members                    []member
		Events                     []event
		Time                       time.Time
	}{Node: "n1", Leader: "n2", VIP: "192.0.2.10", VIPHeld: "n2", Term: 3, Quorum: 2,
		Members: []member{{ID: "n1", Self: true, Health: "ok", DiskFree: 1 << 30}, {ID: "n2", Health: "ok"}, {ID: "<b>n3</b>", Health: "down"}},
		Events:  []event{{Time: time.Now(), Kind: "election", Term: 3, Leader: "n2", Downtime: 1500 * time.Millisecond}}, Time: time.Now()}
	e := newWebEnv(t, WebConfig{Cluster: func(context.Context) any { return st }})
	rec := httptest.NewRecorder()
	e.web.ServeClusterPage(rec, httptest.NewRequest("GET", "/cluster", nil))
	page := rec.Body.String()
	for _, want := range []string{"held by <strong>n2", "election", "1500 ms", "&lt;b&gt;n3&lt;/b&gt;", "n1 (this node)"} {
		if !strings.Contains(page, want) {
			t.Errorf("cluster page lacks %q:\n%s", want, page)
		}
	}
}

// A fresh box sends a global admin from the dashboard to the setup wizard
// until it is finished; domain admins and finished boxes see the dashboard.
func TestWebDashboardOpensWizardUntilSetupDone(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	if err := e.web.AddSetupPages(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.web.Mount(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	root := e.client()
	if code, body := root.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/?lang=zh-TW", nil)
	resp, err := root.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup?lang=zh-TW" {
		t.Fatalf("fresh box: GET / = %d to %q, want 303 to /setup?lang=zh-TW", resp.StatusCode, resp.Header.Get("Location"))
	}
	da := e.client()
	da.login("da@a.example", "pw-da", false)
	da.get("/", 200)
	if code, body := root.do("PUT", "/api/setup", `{"done":true}`, true); code != http.StatusOK {
		t.Fatalf("PUT /api/setup: %d %s", code, body)
	}
	root.get("/", 200)
}

// With remote administration over HTTP turned off, the admin pages, the
// login and the API answer 403 to a non-loopback client.
func TestWebRemoteAdminSwitch(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	raw, _ := json.Marshal(RemoteSettings{Ping: true, HTTP: false, HTTPSAdmin: true})
	if err := e.store.KVPutValue(context.Background(), RemoteNamespace, RemoteKey, raw); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.web.Mount(mux)
	for _, path := range []string{"/login", "/", "/api/domains", "/accounts.csv"} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "192.0.2.7:40000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "turned off") {
			t.Errorf("remote GET %s: %d %q", path, w.Code, w.Body.String())
		}
		req = httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w = httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code == http.StatusForbidden {
			t.Errorf("loopback GET %s refused", path)
		}
	}
}

// A domain admin who opens a global page gets the message, not the page's
// forms or tables.
func TestWebForbiddenPageShowsNoForms(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	da := e.client()
	if code, body := da.login("da@a.example", "pw-da", false); code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	for _, p := range []string{"/security", "/status/cluster"} {
		code, body := da.do("GET", p, "", false)
		if code != http.StatusForbidden || !strings.Contains(body, "for global administrators") {
			t.Errorf("%s: %d", p, code)
		}
		if strings.Contains(body, "data-api=") || strings.Contains(body, "<table") {
			t.Errorf("%s shows its forms or tables to a domain admin:\n%.600s", p, body)
		}
	}
}
