package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter/firewall"
)

type fakeFirewall struct{ blocks map[string]firewall.Block }

func (f *fakeFirewall) List() ([]firewall.Block, error) {
	var out []firewall.Block
	for _, b := range f.blocks {
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeFirewall) Block(_ context.Context, target, reason string, d time.Duration) (firewall.Block, error) {
	key, err := firewall.ParseTarget(target)
	if err != nil {
		return firewall.Block{}, err
	}
	b := firewall.Block{Key: key, Reason: reason, Created: time.Now()}
	if d > 0 {
		b.Expires = b.Created.Add(d)
	}
	f.blocks[key] = b
	return b, nil
}

func (f *fakeFirewall) Unblock(_ context.Context, target string) (bool, error) {
	key, err := firewall.ParseTarget(target)
	if err != nil {
		return false, err
	}
	_, ok := f.blocks[key]
	delete(f.blocks, key)
	return ok, nil
}

func TestFirewallAPI(t *testing.T) {
	fw := &fakeFirewall{blocks: map[string]firewall.Block{}}
	api := NewAPI(APIConfig{Firewall: fw})
	do := func(method, path, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	tests := []struct {
		method, path, body string
		code               int
		contains           string
	}{
		{"POST", "/api/firewall/blocks", `{"target":"192.0.2.0/24","reason":"wave","duration":"2h"}`, http.StatusCreated, `"target": "192.0.2.0/24"`},
		{"POST", "/api/firewall/blocks", `{"target":"Mallory@Example.org"}`, http.StatusCreated, `"kind": "account"`},
		{"POST", "/api/firewall/blocks", `{"target":"nonsense"}`, http.StatusBadRequest, `"error": "target: `},
		{"POST", "/api/firewall/blocks", `{"target":"192.0.2.1","duration":"soon"}`, http.StatusBadRequest, `duration`},
		{"POST", "/api/firewall/blocks", `{"target":"192.0.2.1","extra":1}`, http.StatusBadRequest, `bad JSON body`},
		{"GET", "/api/firewall/blocks", ``, http.StatusOK, `"reason": "wave"`},
		{"DELETE", "/api/firewall/blocks?target=192.0.2.0/24", ``, http.StatusOK, `"removed"`},
		{"DELETE", "/api/firewall/blocks?target=192.0.2.0/24", ``, http.StatusNotFound, `no block for`},
		{"DELETE", "/api/firewall/blocks/mallory@example.org", ``, http.StatusOK, `"removed"`},
		{"DELETE", "/api/firewall/blocks?target=", ``, http.StatusBadRequest, `"error"`},
	}
	for _, tc := range tests {
		code, body := do(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s %s: %d %s; want %d containing %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.contains)
		}
	}
	var rows []map[string]any
	if _, body := do("GET", "/api/firewall/blocks", ""); json.Unmarshal([]byte(body), &rows) != nil || len(rows) != 0 {
		t.Errorf("blocks left: %s", body)
	}
	// Without a firewall the API says so.
	if code, body := (func() (int, string) {
		w := httptest.NewRecorder()
		NewAPI(APIConfig{}).ServeHTTP(w, httptest.NewRequest("GET", "/api/firewall/blocks", nil))
		return w.Code, w.Body.String()
	})(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("no firewall: %d %s", code, body)
	}
}
