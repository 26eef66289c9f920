package webui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSetupState(t *testing.T) {
	srv, st := w2Server(t, nil)
	a := NewAPI(APIConfig{Store: st, Status: func() any { return nil }})
	if a.SetupDone() {
		t.Fatal("fresh node reports setup done")
	}
	if code, body := call(t, srv, "GET", "/api/setup", nil); code != http.StatusOK || !strings.Contains(string(body), `"done": false`) {
		t.Fatalf("get: %d %s", code, body)
	}
	for _, bad := range []string{`{}`, `{"done":"yes"}`, `{"done":true,"x":1}`} {
		if code, _ := call(t, srv, "PUT", "/api/setup", bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, code)
		}
	}
	if code, body := call(t, srv, "PUT", "/api/setup", `{"done":true}`); code != http.StatusOK || !strings.Contains(string(body), "completed_at") {
		t.Fatalf("put: %d %s", code, body)
	}
	if !a.SetupDone() {
		t.Fatal("setup not done after PUT")
	}
	if code, _ := call(t, srv, "PUT", "/api/setup", `{"done":false}`); code != http.StatusOK || a.SetupDone() {
		t.Fatal("wizard cannot be reopened")
	}
}

// TestWizardAndToolsPages: the pages render for a global administrator
// (with the elements their scripts need, in the chosen language); a
// domain administrator gets 403 for the pages and for the APIs behind
// them, and a state-changing call needs the CSRF token.
func TestWizardAndToolsPages(t *testing.T) {
	e := newWebEnv(t, WebConfig{})
	// newWebEnv mounted the builtin pages; mount again with ours on a new
	// server (the same Web).
	if err := e.web.AddSetupPages(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.web.Mount(mux)
	e.srv.Close()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)

	root := e.client()
	if code, body := root.login("root@a.example", "pw-root", false); code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	page := root.get("/setup", 200)
	for _, want := range []string{`id="net-form"`, `id="import-form"`, `data-step="3"`, `src="/static/wizard.js"`, `href="/tools"`} {
		if !strings.Contains(page, want) {
			t.Errorf("/setup lacks %s", want)
		}
	}
	if page := root.get("/tools?lang=zh-TW", 200); !strings.Contains(page, "網路工具") || !strings.Contains(page, `id="tool-output"`) {
		t.Errorf("/tools in zh-TW:\n%.400s", page)
	}
	if page := root.get("/system", 200); !strings.Contains(page, `id="remote-form"`) || !strings.Contains(page, `href="/api/settings/export"`) {
		t.Errorf("/system:\n%.400s", page)
	}
	for _, js := range []string{"/static/wizard.js", "/static/tools.js", "/static/system.js", "/static/wizard.css", "/static/tools.css"} {
		root.get(js, 200)
	}
	if code, _ := root.do("PUT", "/api/setup", `{"done":true}`, false); code != http.StatusForbidden {
		t.Errorf("PUT /api/setup without CSRF token: %d", code)
	}
	if code, body := root.do("PUT", "/api/setup", `{"done":true}`, true); code != http.StatusOK {
		t.Errorf("PUT /api/setup: %d %s", code, body)
	}
	if !e.web.SetupDone() {
		t.Error("setup not done")
	}

	da := e.client()
	if code, body := da.login("da@a.example", "pw-da", false); code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	for _, p := range []string{"/setup", "/tools", "/system"} {
		if code, _ := da.do("GET", p, "", false); code != http.StatusForbidden {
			t.Errorf("domain admin GET %s: %d", p, code)
		}
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/setup", ""}, {"PUT", "/api/setup", `{"done":false}`}, {"GET", "/api/network/interfaces", ""},
		{"POST", "/api/tools/ping", `{"host":"127.0.0.1"}`}, {"GET", "/api/settings/export", ""}, {"GET", "/api/certificates", ""},
	} {
		if code, body := da.do(r.method, r.path, r.body, true); code != http.StatusForbidden {
			t.Errorf("domain admin %s %s: %d %s", r.method, r.path, code, body)
		}
	}
}
