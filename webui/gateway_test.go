package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/protocols/outbound"
)

func TestGatewayAPI(t *testing.T) {
	srv, st := w2Server(t, nil)
	if err := st.AddDomain(context.Background(), "gw.test"); err != nil {
		t.Fatal(err)
	}
	ok := map[string]any{"backends": []string{"b1.gw.test:25", "[::1]:2525"}}
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"not yet a gateway", "GET", "/api/domains/gw.test/gateway", nil, 404, "not a gateway domain"},
		{"unhosted domain", "PUT", "/api/domains/other.test/gateway", ok, 404, "not hosted here"},
		{"bad JSON", "PUT", "/api/domains/gw.test/gateway", `{"backends": 5}`, 400, "bad JSON"},
		{"unknown field", "PUT", "/api/domains/gw.test/gateway", `{"backend": ["h:25"]}`, 400, "bad JSON"},
		{"no backend", "PUT", "/api/domains/gw.test/gateway", map[string]any{"verify": "none"}, 400, "at least one backend"},
		{"bad backend", "PUT", "/api/domains/gw.test/gateway", map[string]any{"backends": []string{"h"}}, 400, "HOST:PORT"},
		{"list without recipients", "PUT", "/api/domains/gw.test/gateway", map[string]any{"backends": []string{"h:25"}, "verify": "list"}, 400, "at least one address"},
		{"set", "PUT", "/api/domains/GW.test/gateway", ok, 200, `"verify":"callout"`},
		{"get", "GET", "/api/domains/gw.test/gateway", nil, 200, `"[::1]:2525"`},
		{"list", "GET", "/api/gateway", nil, 200, `"domain":"gw.test"`},
		{"off", "DELETE", "/api/domains/gw.test/gateway", nil, 204, ""},
		{"off again", "DELETE", "/api/domains/gw.test/gateway", nil, 404, "not a gateway domain"},
		{"empty list", "GET", "/api/gateway", nil, 200, "[]"},
	} {
		code, body := call(t, srv, tc.method, tc.path, tc.body)
		var compact bytes.Buffer
		if json.Compact(&compact, body) == nil {
			body = compact.Bytes()
		}
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want %d %q", tc.name, code, body, tc.code, tc.want)
		}
		if code >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s: error body %s is not {\"error\": ...}", tc.name, body)
			}
		}
	}
	// What the API stored is what the node reads.
	call(t, srv, "PUT", "/api/domains/gw.test/gateway", map[string]any{"backends": []string{"h:25"}, "verify": "list",
		"recipients": []string{"Bob@gw.test"}})
	g, found, err := outbound.LoadGateway(st, "gw.test")
	if err != nil || !found || g.Verify != outbound.VerifyList || !g.HasRecipient("bob@gw.test") {
		t.Fatalf("stored %+v %v %v", g, found, err)
	}
}

type fakeBouncer struct{ err error }

func (f fakeBouncer) Bounce(context.Context, string, string) error { return f.err }

func TestQueueBounceAPI(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Bouncer
		code int
	}{
		{"no engine", nil, http.StatusServiceUnavailable},
		{"bounced", fakeBouncer{}, http.StatusNoContent},
		{"busy", fakeBouncer{err: errors.Join(errors.New("bounce Q"), outbound.ErrBusy)}, http.StatusConflict},
	} {
		srv, _ := w2Server(t, func(c *APIConfig) {
			if tc.b != nil {
				c.Bouncer = tc.b
			}
		})
		if code, body := call(t, srv, "POST", "/api/queue/Q1/bounce", nil); code != tc.code {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
}
