package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserAdmin drives the web admin in headless chromium against the
// real binary: login (a wrong password, then the captcha), adding a
// domain, importing 1,000 accounts with the progress bar, finding a mail
// sent with smtplib in the mail log, switching language, XSS payloads
// shown escaped, and CSRF refusals. Screenshots of the main pages go to
// $TANDEM_SCREENSHOTS.
func TestBrowserAdmin(t *testing.T) {
	chromiumPath(t)
	s := startServer(t, t.TempDir())
	s.mustCLI("account", "add", "boss@example.test", "--password", "admin-pw-1", "--admin")
	s.mustCLI("account", "add", "alice@example.test", "--password", "alice-pw-1", "--name", `<img src=x onerror="window.__xss=1">`)
	// This box is set up from the command line: the dashboard, not the
	// wizard, is the landing page (the wizard has its own test).
	if out := s.mustCLI("setup", "status"); !strings.Contains(out, `"done":false`) {
		t.Fatalf("fresh node: setup status %q", out)
	}
	s.mustCLI("setup", "done")
	b := newBrowser(t, "http://"+s.addr("http"))
	// A page script sets no globals; any payload that ran would set __xss.
	noXSS := func(b *browser, where string) {
		b.t.Helper()
		if evalJS[bool](b, `window.__xss !== undefined`) {
			b.t.Errorf("%s: an XSS payload ran", where)
		}
	}

	t.Run("login", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.Navigate(b.url("/")), chromedp.WaitVisible(chromedp.ID("address")))
		b.screenshot("login")
		for i := 0; i < 3; i++ {
			b.fillLogin("boss@example.test", "wrong-password", true)
			b.run(chromedp.WaitVisible(chromedp.ID("address")))
			if !strings.Contains(b.text(".flash"), "Wrong address or password") {
				t.Errorf("failure %d: message %q", i+1, b.text(".flash"))
			}
		}
		if b.text("#captcha-question") == "" {
			t.Fatal("no captcha after 3 failed logins")
		}
		b.screenshot("login-captcha")
		b.fillLogin("boss@example.test", "admin-pw-1", false) // wrong captcha answer
		b.run(chromedp.WaitVisible(chromedp.ID("address")))
		if !strings.Contains(b.text(".flash"), "Wrong answer") {
			t.Errorf("wrong captcha: message %q", b.text(".flash"))
		}
		b.fillLogin("boss@example.test", "admin-pw-1", true)
		b.run(chromedp.WaitVisible(chromedp.CSS("nav")))
		b.screenshot("dashboard")
	})

	t.Run("domain", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.Navigate(b.url("/domains")), chromedp.WaitVisible(chromedp.ID("domain-name")),
			chromedp.SetValue(chromedp.ID("domain-name"), "web.example"))
		b.submit(`form[data-api="POST /api/domains"]`)
		b.waitJS(`document.querySelector("#domains tbody").textContent.includes("web.example")`, 20*time.Second)
		b.screenshot("domains")
	})

	t.Run("import", func(t *testing.T) {
		b := b.with(t)
		var sb strings.Builder
		sb.WriteString("address,password,display name,quota\n")
		for i := 0; i < 998; i++ {
			fmt.Fprintf(&sb, "user%04d@web.example, pw-%04d-secret, User %d, 1G\n", i, i, i)
		}
		sb.WriteString("x<script>window.__xss=1</script>@web.example, pw, bad address\n")
		sb.WriteString("evil@web.example, pw-evil-1, <script>window.__xss=1</script>\n")
		b.run(chromedp.Navigate(b.url("/accounts")), chromedp.WaitVisible(chromedp.ID("import-text")),
			chromedp.SetValue(chromedp.ID("import-text"), sb.String()))
		b.submit("#import-form")
		start := time.Now()
		b.waitJS(`document.getElementById("import-pct").textContent === "100%" && document.getElementById("import-summary").textContent !== ""`, 150*time.Second)
		t.Logf("1,000-line import in the browser: %v", time.Since(start).Round(time.Millisecond))
		if n := evalJS[int](b, `document.querySelectorAll("#import-results li").length`); n != 1000 {
			t.Errorf("per-line results: %d, want 1000", n)
		}
		if sum := b.text("#import-summary"); !strings.Contains(sum, "999 created") || !strings.Contains(sum, "1 failed") {
			t.Errorf("summary %q", sum)
		}
		if w := evalJS[string](b, `document.getElementById("import-bar").style.width`); w != "100%" {
			t.Errorf("progress bar at %s", w)
		}
		noXSS(b, "import results")
		b.shotElement("accounts-import", "section:has(#import-form)")
		// Server-side paging and search over the accounts.
		b.run(chromedp.SetValue(chromedp.ID("acct-search"), "evil"))
		b.submit("#account-search")
		b.waitJS(`document.querySelector("#accounts tbody").textContent.includes("evil@web.example")`, 20*time.Second)
		if !strings.Contains(b.text("#accounts tbody"), "<script>window.__xss=1</script>") {
			t.Errorf("display name not shown as text: %q", b.text("#accounts tbody"))
		}
		evalJS[chromedp.Void](b, `document.getElementById("acct-search").value = ""`)
		b.submit("#account-search")
		b.waitJS(`document.querySelector("#accounts-pager .pos").textContent.includes("/ 1002")`, 20*time.Second)
		noXSS(b, "accounts list")
		b.shotElement("accounts", "section:has(#accounts)")
	})

	t.Run("maillog", func(t *testing.T) {
		b := b.with(t)
		out := python(t, `
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "sender@outside.example"
m["To"] = "alice@example.test"
m["Subject"] = "Browser test <script>window.__xss=1</script>"
m.set_content("hello from smtplib")
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as c:
    c.send_message(m)
print("sent")
`, s.port("smtp"))
		if !strings.Contains(out, "sent") {
			t.Fatal(out)
		}
		b.run(chromedp.Navigate(b.url("/log")), chromedp.WaitVisible(chromedp.ID("log-subject")),
			chromedp.SetValue(chromedp.ID("log-subject"), "Browser test"))
		// The mail log is written asynchronously: search again until the
		// message shows, as a user would.
		found := false
		for deadline := time.Now().Add(30 * time.Second); !found && time.Now().Before(deadline); {
			b.submit("#log-search")
			time.Sleep(500 * time.Millisecond)
			found = strings.Contains(b.text("#maillog tbody"), "Browser test <script>window.__xss=1</script>")
		}
		if !found {
			b.screenshot("failure-maillog")
			t.Fatalf("mail not in the log page: table %q, status %q", b.text("#maillog tbody"), b.text("#maillog-status"))
		}
		noXSS(b, "mail log")
		b.screenshot("maillog")
	})

	t.Run("language", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.Navigate(b.url("/?lang=zh-TW")), chromedp.WaitVisible(chromedp.CSS("nav")))
		if nav := b.text("nav"); !strings.Contains(nav, "網域") || !strings.Contains(nav, "帳號") {
			t.Errorf("zh-TW navigation: %q", nav)
		}
		b.screenshot("dashboard-zh-TW")
		b.run(chromedp.Navigate(b.url("/domains")), chromedp.WaitVisible(chromedp.CSS("nav")))
		if h := b.text("h1"); h != "網域" {
			t.Errorf("language did not stick: h1 %q", h)
		}
		b.run(chromedp.Navigate(b.url("/?lang=zh-CN")), chromedp.WaitVisible(chromedp.CSS("nav")))
		if nav := b.text("nav"); !strings.Contains(nav, "域名") {
			t.Errorf("zh-CN navigation: %q", nav)
		}
		b.run(chromedp.Navigate(b.url("/?lang=en")), chromedp.WaitVisible(chromedp.CSS("nav")))
	})

	t.Run("csrf", func(t *testing.T) {
		b := b.with(t)
		code := evalJS[int](b, `fetch("/api/domains", {method: "POST", headers: {"Content-Type": "application/json"},
			body: JSON.stringify({name: "csrf.example"})}).then(r => r.status)`)
		if code != 403 {
			t.Errorf("POST without the CSRF token: %d, want 403", code)
		}
		code = evalJS[int](b, `fetch("/api/domains", {method: "DELETE"}).then(r => r.status)`)
		if code != 403 {
			t.Errorf("DELETE without the CSRF token: %d, want 403", code)
		}
		code = evalJS[int](b, `fetch("/api/domains", {method: "POST", headers: {"Content-Type": "application/json",
			"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
			body: JSON.stringify({name: "csrf.example"})}).then(r => r.status)`)
		if code != 201 {
			t.Errorf("POST with the CSRF token: %d, want 201", code)
		}
	})

	t.Run("pages", func(t *testing.T) {
		b := b.with(t)
		for _, p := range []string{"queue", "aliases", "status/cluster", "security"} {
			b.run(chromedp.Navigate(b.url("/"+p)), chromedp.WaitVisible(chromedp.CSS("h1")))
			b.screenshot(strings.ReplaceAll(p, "/", "-"))
		}
		noXSS(b, "pages")
	})
}

// TestWebAdminHTTPS: the HTTPS listener serves the web admin with the
// node's certificate, and its cookies are Secure.
func TestWebAdminHTTPS(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.mustCLI("account", "add", "boss@example.test", "--password", "boss-pw-1", "--admin")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed node certificate
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "https://" + s.addr("https")
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `name="password"`) {
		t.Fatalf("GET /login over HTTPS: %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatal("no login form token")
	}
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {m[1]}, "address": {"boss@example.test"}, "password": {"boss-pw-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over HTTPS: %d", resp.StatusCode)
	}
	var secure bool
	for _, ck := range resp.Cookies() {
		if ck.Name == "tandem_session" {
			secure = ck.Secure && ck.HttpOnly && ck.SameSite == http.SameSiteStrictMode
		}
	}
	if !secure {
		t.Errorf("session cookie over HTTPS not Secure+HttpOnly+SameSite=Strict: %v", resp.Header["Set-Cookie"])
	}
	resp, err = c.Get(base + "/api/domains")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "example.test") {
		t.Errorf("GET /api/domains after login: %d %s", resp.StatusCode, body)
	}
	// The unix socket stays token-free for the CLI.
	if out := s.mustCLI("domain", "add", "sock.example"); !strings.Contains(out, "sock.example") {
		t.Errorf("CLI over the socket: %s", out)
	}

	// A domain administrator made with the CLI sees only their domain.
	s.mustCLI("account", "add", "da@example.test", "--password", "da-pw-1")
	if out := s.mustCLI("account", "admin", "da@example.test", "--domains", "example.test"); !strings.Contains(out, "administers example.test") {
		t.Errorf("account admin: %s", out)
	}
	if out, err := s.cli("account", "admin", "da@example.test", "--domains", "nowhere.example"); err == nil || !strings.Contains(out, "nowhere.example") {
		t.Errorf("account admin of an unknown domain: %v %s", err, out)
	}
	jar2, _ := cookiejar.New(nil)
	c.Jar = jar2
	resp, err = c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	m = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(string(body))
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {m[1]}, "address": {"da@example.test"}, "password": {"da-pw-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("domain admin login: %d", resp.StatusCode)
	}
	for path, want := range map[string]int{"/api/domains": 200, "/api/status": 403, "/api/accounts?domain=sock.example": 403, "/api/settings/export": 403} {
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || strings.Contains(string(body), "sock.example") {
			t.Errorf("domain admin GET %s: %d %s; want %d without sock.example", path, resp.StatusCode, body, want)
		}
	}
}

// TestWebSessionSurvivesFailover: sessions live in the replicated KV store,
// so a login made on the leader keeps working on a survivor after the
// leader dies (DESIGN §7: a failover keeps logins).
func TestWebSessionSurvivesFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster drill")
	}
	var nodes []*server
	var dirs, caddrs []string
	for i := 0; i < 3; i++ {
		dirs = append(dirs, t.TempDir())
		caddrs = append(caddrs, freePort(t))
	}
	for i := 0; i < 3; i++ {
		a := []string{"--node-id", fmt.Sprintf("n%d", i+1), "--cluster-addr", caddrs[i], "--gossip-addr", freePort(t)}
		if i > 0 {
			secret, _ := os.ReadFile(filepath.Join(dirs[0], "cluster-secret"))
			a = append(a, "--join", caddrs[0], "--cluster-secret", strings.TrimSpace(string(secret)))
		}
		nodes = append(nodes, startServer(t, dirs[i], a...))
	}
	nodes[0].mustCLI("account", "add", "boss@example.test", "--password", "boss-pw-1", "--admin")
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	base := "http://" + nodes[0].addr("http")
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pre := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(string(body))
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"csrf": {pre[1]},
		"address": {"boss@example.test"}, "password": {"boss-pw-1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range resp.Cookies() {
		req.AddCookie(ck)
	}
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "tandem_session" {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("login on n1: %d", resp.StatusCode)
	}
	// A page of n1 gives the session's CSRF token.
	req, _ = http.NewRequest("GET", base+"/domains", nil)
	req.AddCookie(session)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := regexp.MustCompile(`<meta name="csrf-token" content="([0-9a-f]+)">`).FindStringSubmatch(string(body))
	if tok == nil {
		t.Fatalf("no CSRF token on n1's dashboard: %d", resp.StatusCode)
	}
	nodes[0].kill()
	survivor := "http://" + nodes[1].addr("http")
	waitCond(t, "the session works on a survivor", 30*time.Second, func() bool {
		req, _ := http.NewRequest("POST", survivor+"/api/domains", strings.NewReader(`{"name":"after-failover.example"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", tok[1])
		req.AddCookie(session)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		// 401 until the survivor has applied the entries n1 committed
		// (it learns the commit index from the next leader).
		return resp.StatusCode == http.StatusCreated
	})
}
