package webui

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/storage/storetest"
)

func TestFilterListsAPI(t *testing.T) {
	st := storetest.New(t)
	storetest.AddAccount(t, st, "alice@example.test", "pw")
	srv := httptest.NewServer(NewAPI(APIConfig{Store: st, Status: func() any { return nil }, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/filter/lists", `{"scope":"global","list":"block","entries":["spam.test","198.51.100.0/24"]}`, 200, `"spam.test"`},
		{"POST", "/api/filter/lists", `{"scope":"example.test","list":"allow","entries":[".partner.test"]}`, 200, `".partner.test"`},
		{"POST", "/api/filter/lists", `{"scope":"Alice@example.test","list":"allow","entries":["friend@x.test"]}`, 200, `"alice@example.test"`},
		{"POST", "/api/filter/lists", `{"scope":"nobody@example.test","list":"allow","entries":["x.test"]}`, 404, `"error"`},
		{"POST", "/api/filter/lists", `{"scope":"unhosted.test","list":"allow","entries":["x.test"]}`, 404, "not a hosted domain"},
		{"POST", "/api/filter/lists", `{"scope":"global","list":"maybe","entries":["x.test"]}`, 400, "block or allow"},
		{"POST", "/api/filter/lists", `{"scope":"global","list":"block","entries":["not valid!"]}`, 400, "not an address, domain, IP or CIDR"},
		{"POST", "/api/filter/lists", `{"scope":"global","list":"block","entries":[]}`, 400, "no entries"},
		{"GET", "/api/filter/lists?scope=alice@example.test", "", 200, `"friend@x.test"`},
		{"GET", "/api/filter/lists", "", 200, `"198.51.100.0/24"`},
		{"DELETE", "/api/filter/lists", `{"scope":"global","list":"block","entries":["SPAM.test"]}`, 200, `"198.51.100.0/24"`},
		{"DELETE", "/api/filter/lists", `{"scope":"global","list":"block","entries":["spam.test"]}`, 404, "not on the global block list"},

		{"POST", "/api/filter/dnsbl", `{"zone":"zen.example","reject":true,"match":["127.0.0.2-127.0.0.11"]}`, 200, `"kind": "block"`},
		{"POST", "/api/filter/dnsbl", `{"zone":"wl.example","kind":"allow","score":2}`, 200, `"score": 2`},
		{"POST", "/api/filter/dnsbl", `{"zone":"bad zone"}`, 400, "not allowed"},
		{"POST", "/api/filter/dnsbl", `{"zone":"x.example","colour":"red"}`, 400, "unknown field"},
		{"GET", "/api/filter/dnsbl", "", 200, `"wl.example"`},
		{"DELETE", "/api/filter/dnsbl/zen.example", "", 204, ""},
		{"DELETE", "/api/filter/dnsbl/zen.example", "", 404, "not configured"},

		{"PATCH", "/api/filter/greylist", `{"enabled":true,"delay_seconds":2}`, 200, `"enabled": true`},
		{"PATCH", "/api/filter/greylist", `{"add_domains":["example.test"],"enabled":false}`, 200, `"example.test"`},
		{"PATCH", "/api/filter/greylist", `{"delay_seconds":100000}`, 400, "longer than the delay"},
		{"GET", "/api/filter/greylist", "", 200, `"delay_seconds": 2`},

		{"POST", "/api/filter/rules", `{"user":"alice@example.test","field":"subject","op":"regex","value":"(?i)lottery","action":"block"}`, 201, `"id"`},
		{"POST", "/api/filter/rules", `{"user":"alice@example.test","field":"subject","op":"regex","value":"(","action":"block"}`, 400, "rule regex"},
		{"POST", "/api/filter/rules", `{"user":"ghost@example.test","field":"subject","op":"contains","value":"x","action":"block"}`, 404, ""},
		{"GET", "/api/filter/rules?user=alice@example.test", "", 200, `lottery`},
		{"DELETE", "/api/filter/rules/alice@example.test/nope", "", 404, "has no rule nope"},

		{"POST", "/api/filter/fingerprints", "Subject: x\r\n\r\nhi", 400, "too little text"},
		{"GET", "/api/filter/fingerprints", "", 200, `[]`},
		{"DELETE", "/api/filter/fingerprints/0011223344556677", "", 404, "no fingerprint"},
	} {
		code, body := call(c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s; want %d containing %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	// A learned fingerprint can be listed and deleted.
	msg := "Subject: win\r\n\r\n" + strings.Repeat("you have won a brand new car claim it today by sending your bank details ", 3)
	code, body := call("POST", "/api/filter/fingerprints?note=test", msg)
	if code != 201 {
		t.Fatalf("add fingerprint: %d %s", code, body)
	}
	var fp struct{ Key string }
	json.Unmarshal([]byte(body), &fp)
	if code, body := call("GET", "/api/filter/fingerprints", ""); !strings.Contains(body, fp.Key) {
		t.Errorf("list fingerprints: %d %s", code, body)
	}
	if code, _ := call("DELETE", "/api/filter/fingerprints/"+fp.Key, ""); code != 204 {
		t.Errorf("delete fingerprint: %d", code)
	}
	// Rules: delete by ID.
	_, body = call("GET", "/api/filter/rules?user=alice@example.test", "")
	var rules []struct{ ID string }
	json.Unmarshal(bytes.TrimSpace([]byte(body)), &rules)
	if len(rules) != 1 {
		t.Fatalf("rules: %s", body)
	}
	if code, _ := call("DELETE", "/api/filter/rules/alice@example.test/"+rules[0].ID, ""); code != 204 {
		t.Errorf("delete rule: %d", code)
	}
}
