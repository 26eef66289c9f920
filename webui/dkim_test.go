package webui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter/dkimsign"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestDKIMAndSignatureAPI(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	if err := s.AddDomain(ctx, "k.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := dkimsign.NewKeys(s).Ensure(ctx, "k.test", time.Now()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewAPI(APIConfig{Store: s, Status: func() any { return nil }}))
	defer srv.Close()
	req := func(method, path, body string) (int, string) {
		r, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := req("GET", "/api/dkim", "")
	var keys []map[string]any
	json.Unmarshal([]byte(body), &keys)
	if code != 200 || len(keys) != 2 || strings.Contains(body, "PRIVATE") || !strings.Contains(body, "._domainkey.k.test") {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body = req("POST", "/api/dkim/k.test/rotate", "")
	json.Unmarshal([]byte(body), &keys)
	if code != 201 || len(keys) != 2 || keys[0]["state"] != "published" {
		t.Fatalf("rotate: %d %s", code, body)
	}
	sel := keys[0]["selector"].(string)
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/dkim/k.test/rotate", "", 409, "already pending"},
		{"POST", "/api/dkim/none.test/rotate", "", 404, "not hosted"},
		{"GET", "/api/dkim/none.test", "", 404, "not hosted"},
		{"POST", "/api/dkim/k.test/activate/nosuch", "", 404, "no such key"},
		{"POST", "/api/dkim/k.test/activate/" + sel, "", 200, `"state": "active"`},
		{"POST", "/api/dkim/k.test/activate/" + sel, "", 409, "not in state published"},
		{"GET", "/api/dkim/k.test", "", 200, `"state": "retired"`},
		{"PUT", "/api/domains/k.test/signature", `{"enabled": true}`, 200, `"enabled": true`},
		{"PUT", "/api/domains/k.test/signature", `{}`, 400, "enabled"},
		{"PUT", "/api/domains/k.test/signature", `{"enabled": "yes"}`, 400, "bad JSON"},
		{"PUT", "/api/domains/none.test/signature", `{"enabled": true}`, 404, "not hosted"},
		{"GET", "/api/signature", "", 200, `"domain": "k.test"`},
	} {
		code, body := req(c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s; want %d containing %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
}
