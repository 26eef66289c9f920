package webui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/filter/spamstage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// Bad input to the spam filter's API gets a 4xx with a JSON error that
// says what is wrong; good input works.
func TestFilterAPI(t *testing.T) {
	s := storetest.New(t)
	e, err := spamstage.New(s, spamstage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewAPI(APIConfig{Store: s, Spam: e, PublicURL: func() string { return "http://mx.example" }}))
	defer srv.Close()
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"PUT", "/api/filter/policy/global", `{"action":"bounce"}`, 400, "want junk, inbox, delete or quarantine"},
		{"PUT", "/api/filter/policy/u:nobody", `{"action":"junk"}`, 400, "u: needs one address"},
		{"PUT", "/api/filter/policy/global", `{"threshold":"x"}`, 400, "bad JSON body"},
		{"PUT", "/api/filter/policy/d:example.com", `{"threshold":7,"action":"quarantine"}`, 200, `"action": "quarantine"`},
		{"GET", "/api/filter/policy/u:a@example.com", "", 200, `"threshold": 7`},
		{"POST", "/api/filter/train", `{"messages":[]}`, 400, "give 1 to 500"},
		{"POST", "/api/filter/train", `{"messages":[{"class":"eggs","message":"U3ViamVjdDogeA0KDQp4"}]}`, 400, "want spam, ham or none"},
		{"POST", "/api/filter/train", `{"messages":[{"class":"spam","message":"U3ViamVjdDogeA0KDQp4"}]}`, 200, `"trained": 1`},
		{"POST", "/api/filter/classify", "Subject: x\r\n\r\nx\r\n", 200, `"verdict": "`},
		{"POST", "/api/quarantine/release", `{"ids":[]}`, 400, "give at least one quarantine ID"},
		{"POST", "/api/quarantine/release", `{"ids":["1/abc"]}`, 404, "no such quarantined message"},
		{"GET", "/api/quarantine?account=nobody@example.com", "", 404, "error"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.code, tc.want)
		}
		if resp.StatusCode >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(b, &e) != nil || e.Error == "" {
				t.Errorf("%s %s: error body %q is not JSON {error}", tc.method, tc.path, b)
			}
		}
	}
}
