package webui

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/protocols/dnsd"
)

func TestDNSAPI(t *testing.T) {
	srv, store := w2Server(t, func(c *APIConfig) {
		c.DNSZones = dnsd.NewKVZones(c.Store, dnsd.HostConfig{V4: []net.IP{net.ParseIP("192.0.2.25")}}, nil, nil)
	})
	if err := store.AddDomain(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	zone := func(body []byte) DNSZoneView {
		t.Helper()
		var v DNSZoneView
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return v
	}
	code, body := call(t, srv, "GET", "/api/dns/example.com/records", nil)
	if code != http.StatusOK {
		t.Fatalf("GET records: %d %s", code, body)
	}
	first := zone(body)
	if len(first.Records) == 0 || !first.Records[0].Auto || first.Records[0].Type != "SOA" ||
		!strings.HasPrefix(first.ZoneFile, "$ORIGIN example.com.") {
		t.Fatalf("zone view: %+v", first)
	}

	for _, c := range []struct {
		method, path string
		body         any
		code         int
		substr       string
	}{
		{"GET", "/api/dns/nothere.org/records", nil, 404, "no such hosted domain"},
		{"POST", "/api/dns/example.com/records", `{"name":`, 400, "bad JSON"},
		{"POST", "/api/dns/example.com/records", `{"name":"a","type":"A","value":"192.0.2.1","extra":1}`, 400, "unknown field"},
		{"POST", "/api/dns/example.com/records", map[string]any{"name": "a", "type": "A", "value": "x"}, 400, "cannot parse value"},
		{"POST", "/api/dns/example.com/records", map[string]any{"name": "a", "type": "NS", "value": "ns.example.org."}, 400, "type not allowed"},
		{"POST", "/api/dns/nothere.org/records", map[string]any{"name": "a", "type": "A", "value": "192.0.2.1"}, 404, "no such hosted domain"},
		{"DELETE", "/api/dns/example.com/records", nil, 400, "name and type"},
		{"DELETE", "/api/dns/example.com/records?name=zz&type=A", nil, 404, "no such record"},
		{"GET", "/api/domains/nothere.org/dns", nil, 404, "no such hosted domain"},
		{"GET", "/api/domains/example.com/dns/check?resolver=" + url.QueryEscape("not a/resolver"), nil, 400, "want HOST"},
	} {
		code, body := call(t, srv, c.method, c.path, c.body)
		var e struct{ Error string }
		if code != c.code || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, c.substr) {
			t.Errorf("%s %s: %d %s; want %d with %q", c.method, c.path, code, body, c.code, c.substr)
		}
	}

	code, body = call(t, srv, "POST", "/api/dns/example.com/records", map[string]any{"name": "www", "type": "a", "ttl": 60, "value": "192.0.2.80"})
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	added := zone(body)
	if int32(added.Serial-first.Serial) <= 0 {
		t.Errorf("serial %d after add, was %d", added.Serial, first.Serial)
	}
	found := false
	for _, r := range added.Records {
		found = found || r.Name == "www.example.com." && r.Type == "A" && r.TTL == 60 && !r.Auto
	}
	if !found {
		t.Errorf("added record not in %+v", added.Records)
	}
	if code, body := call(t, srv, "POST", "/api/dns/example.com/records", map[string]any{"name": "www", "type": "A", "value": "192.0.2.80"}); code != http.StatusConflict {
		t.Errorf("duplicate: %d %s", code, body)
	}
	code, body = call(t, srv, "DELETE", "/api/dns/example.com/records?name=www&type=A&value=192.0.2.80", nil)
	if code != http.StatusOK || int32(zone(body).Serial-added.Serial) <= 0 {
		t.Errorf("DELETE: %d %s", code, body)
	}

	code, body = call(t, srv, "PUT", "/api/dns/example.com/records", DNSSetRequest{Name: "@", Type: "MX", Values: []string{"5 mx.example.org."}})
	if code != http.StatusOK || !strings.Contains(zone(body).ZoneFile, "MX\t5 mx.example.org.") || strings.Contains(zone(body).ZoneFile, "MX\t10 mail") {
		t.Errorf("PUT MX: %d %s", code, body)
	}
	if code, body := call(t, srv, "PUT", "/api/dns/example.com/records", DNSSetRequest{Name: "@", Type: "MX"}); code != http.StatusBadRequest ||
		!strings.Contains(string(body), "no values") {
		t.Errorf("PUT without values: %d %s", code, body)
	}
	code, body = call(t, srv, "GET", "/api/domains/example.com/dns", nil)
	var pub DNSPublishView
	if code != http.StatusOK || json.Unmarshal(body, &pub) != nil {
		t.Fatalf("publish view: %d %s", code, body)
	}
	for _, r := range pub.Records {
		if r.Type == "SOA" || r.Type == "NS" || strings.HasPrefix(r.Name, "ns1.") {
			t.Errorf("record %v listed for publishing elsewhere", r)
		}
	}
	if len(pub.Records) < 4 {
		t.Errorf("publish view too short: %v", pub.Records)
	}
}

func TestDNSAPIUnavailable(t *testing.T) {
	srv, _ := w2Server(t, nil)
	if code, body := call(t, srv, "GET", "/api/dns/example.com/records", nil); code != http.StatusServiceUnavailable ||
		!strings.Contains(string(body), "not available") {
		t.Errorf("without zones: %d %s", code, body)
	}
}

func TestPublishNotes(t *testing.T) {
	mx := dnsd.Record{Name: "example.com.", Type: "MX", Value: "10 mail.example.com."}
	if n := publishNotes([]dnsd.Record{mx}); len(n) != 1 || !strings.Contains(n[0], "--dns-host-ip") {
		t.Errorf("MX without address: notes %q", n)
	}
	a := dnsd.Record{Name: "mail.example.com.", Type: "A", Value: "192.0.2.1"}
	if n := publishNotes([]dnsd.Record{mx, a}); len(n) != 0 {
		t.Errorf("MX with address: notes %q", n)
	}
	out := dnsd.Record{Name: "example.com.", Type: "MX", Value: "10 mx.example.org."}
	if n := publishNotes([]dnsd.Record{out}); len(n) != 0 {
		t.Errorf("MX outside the domain: notes %q", n)
	}
}
