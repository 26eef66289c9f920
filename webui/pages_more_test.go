package webui

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/protocols/dnsd"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// newMoreEnv is newWebEnv with the DNS zones available (the DNS page
// needs them); a global admin root@a.example, a domain admin da@a.example.
func newMoreEnv(t *testing.T) *webEnv {
	t.Helper()
	s := storetest.New(t)
	ctx := context.Background()
	storetest.AddAccount(t, s, "user@a.example", "pw-a")
	storetest.AddAccount(t, s, "da@a.example", "pw-da")
	if _, err := s.AddAccount(ctx, storage.NewAccount{Address: "root@a.example", Password: "pw-root", Admin: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVPutValue(ctx, nsDomainAdmins, "da@a.example", []byte(`["a.example"]`)); err != nil {
		t.Fatal(err)
	}
	api := NewAPI(APIConfig{Store: s, GlobalAdmin: RequestIsGlobal,
		DNSZones: dnsd.NewKVZones(s, dnsd.HostConfig{V4: []net.IP{net.ParseIP("192.0.2.25")}}, nil, nil)})
	wb, err := NewWeb(WebConfig{API: api, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	wb.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &webEnv{t: t, store: s, srv: srv, web: wb}
}

func loggedIn(t *testing.T, e *webEnv, addr, pw string) *webClient {
	t.Helper()
	c := e.client()
	if code, body := c.login(addr, pw, false); code != http.StatusSeeOther {
		t.Fatalf("login %s: %d %s", addr, code, body)
	}
	return c
}

// TestWebMorePagesRender: the new pages and sections render for a global
// admin with their forms, are in the navigation, and the global-only ones
// are refused to a domain admin (who also gets no domain-settings section
// on the domains page, whose APIs would refuse them).
func TestWebMorePagesRender(t *testing.T) {
	e := newMoreEnv(t)
	root := loggedIn(t, e, "root@a.example", "pw-root")
	cases := []struct {
		path string
		ids  []string
	}{
		{"/dns", []string{`id="dns-domain"`, `<option>a.example</option>`, `id="dns-records"`, `id="dns-form"`,
			`id="dns-type"`, `<option>CAA</option>`, `<option>PTR</option>`, `id="dns-publish"`, `id="dns-check-btn"`}},
		{"/filters", []string{`id="policy-form"`, `value="quarantine"`, `id="policy-threshold"`, `id="policy-tag"`,
			`data-stat="/api/filter/stats"`, `id="lists-form"`, `id="lists"`, `id="greylist-form"`, `id="grey-delay"`,
			`id="dnsbl-form"`, `id="dnsbl"`}},
		{"/domains", []string{`id="domain-detail"`, `id="gateway-form"`, `id="gw-verify"`, `id="dkim-rotate"`,
			`id="domain-dkim"`, `id="sig-enabled"`}},
		{"/security", []string{`id="quarantine"`, `data-label-release=`, `id="fwblocks"`, `data-api="POST /api/firewall/blocks"`}},
	}
	for _, tc := range cases {
		body := root.get(tc.path, http.StatusOK)
		for _, id := range tc.ids {
			if !strings.Contains(body, id) {
				t.Errorf("%s: no %s", tc.path, id)
			}
		}
		if !strings.Contains(body, `<script src="/static/admin_more.js" defer></script>`) {
			t.Errorf("%s: page script not loaded", tc.path)
		}
		if strings.Contains(body, "{{") || strings.Contains(body, "!(MISSING") {
			t.Errorf("%s: template residue", tc.path)
		}
	}
	nav := root.get("/", http.StatusOK)
	for _, href := range []string{`href="/dns"`, `href="/filters"`} {
		if !strings.Contains(nav, href) {
			t.Errorf("navigation lacks %s", href)
		}
	}
	// Translated in both Chinese catalogs.
	if body := root.get("/filters?lang=zh-TW", http.StatusOK); !strings.Contains(body, "灰名單") {
		t.Error("filters page not translated to zh-TW")
	}
	if body := root.get("/dns?lang=zh-CN", http.StatusOK); !strings.Contains(body, "需在其他地方发布的记录") {
		t.Error("DNS page not translated to zh-CN")
	}

	da := loggedIn(t, e, "da@a.example", "pw-da")
	for _, p := range []string{"/dns", "/filters"} {
		code, body := da.do("GET", p, "", false)
		if code != http.StatusForbidden || strings.Contains(body, `id="dns-form"`) || strings.Contains(body, `id="policy-form"`) {
			t.Errorf("domain admin GET %s: %d, want 403 without the forms", p, code)
		}
	}
	dom := da.get("/domains", http.StatusOK)
	if strings.Contains(dom, `id="domain-detail"`) {
		t.Error("domain admin sees the gateway/DKIM settings")
	}
	if n := da.get("/", http.StatusOK); strings.Contains(n, `href="/dns"`) || strings.Contains(n, `href="/filters"`) {
		t.Error("domain admin's navigation shows global-only pages")
	}
	// The APIs behind the pages stay global-only (scoping not widened).
	for _, p := range []string{"/api/dns/a.example/records", "/api/filter/lists", "/api/domains/a.example/gateway", "/api/dkim/a.example"} {
		if code, _ := da.do("GET", p, "", false); code != http.StatusForbidden {
			t.Errorf("domain admin GET %s: %d, want 403", p, code)
		}
	}
}

// TestWebMorePagesEscape: XSS payloads stored in DNS record values, list
// entries and domain names reach the pages only as escaped text: the
// server-rendered parts escape them and the API answers JSON (nosniff),
// which the page script writes with textContent (checked in the browser
// test node/e2e/browser_pages_test.go).
func TestWebMorePagesEscape(t *testing.T) {
	e := newMoreEnv(t)
	root := loggedIn(t, e, "root@a.example", "pw-root")
	const payload = `<img src=x onerror=alert(1)>"'`
	rec, _ := json.Marshal(dnsd.Record{Name: "xss", Type: "TXT", Value: strconv.Quote(payload)})
	code, body := root.do("POST", "/api/dns/a.example/records", string(rec), true)
	if code != http.StatusCreated {
		t.Fatalf("add TXT record: %d %s", code, body)
	}
	code, body = root.do("POST", "/api/filter/lists", `{"scope":"global","list":"block","entries":["<script>alert(1)</script>.example"]}`, true)
	if code != http.StatusBadRequest && code != http.StatusOK {
		t.Fatalf("add list entry: %d %s", code, body)
	}
	for _, p := range []string{"/api/dns/a.example/records", "/api/filter/lists"} {
		req, _ := http.NewRequest("GET", e.srv.URL+p, nil)
		resp, err := root.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Content-Type %q, nosniff %q", p, ct, resp.Header.Get("X-Content-Type-Options"))
		}
	}
	for _, p := range []string{"/dns", "/filters", "/domains", "/security"} {
		body := root.get(p, http.StatusOK)
		if strings.Contains(body, "<img src=x") || strings.Contains(body, "<script>alert") {
			t.Errorf("%s: payload in the HTML unescaped", p)
		}
	}
	// The page script never builds markup from data.
	js, err := os.ReadFile("web/static/admin_more.js")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write`).Find(js); m != nil {
		t.Errorf("admin_more.js uses %s", m)
	}
}
