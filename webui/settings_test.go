package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// exportNoTime is the export with the export time blanked, as JSON.
func exportNoTime(t *testing.T, st *storage.Store) []byte {
	t.Helper()
	doc, err := ExportSettings(st)
	if err != nil {
		t.Fatal(err)
	}
	doc.Exported = time.Time{}
	raw, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSettingsExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	srcSrv, src := w2Server(t, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(src.AddDomain(ctx, "abc.example"))
	must(src.AddDomain(ctx, "def.example"))
	for _, na := range []storage.NewAccount{
		{Address: "tech@abc.example", Password: "pw1", DisplayName: "Tech, ABC", QuotaBytes: 1 << 30, Admin: true},
		{Address: "sales@abc.example", Password: "pw2"},
		{Address: "tech@def.example", Password: "pw3", DisplayName: "技術"},
	} {
		_, err := src.AddAccount(ctx, na)
		must(err)
	}
	must(src.SetCatchAll(ctx, "abc.example", "sales@abc.example"))
	must(src.AddAlias(ctx, "info@abc.example", "tech@abc.example", "sales@abc.example"))
	must(src.KVPutValue(ctx, "dns.zones", "abc.example", []byte(`{"records":[]}`)))
	must(src.KVPutValue(ctx, "filter.greylist", "config", []byte(`{"enabled": true}`))) // not compact: kept as base64
	must(src.KVApply(ctx, storage.KVOp{Op: storage.KVAdd, NS: "spam.meta", Key: "ham", Delta: 42}))
	must(src.KVPutValue(ctx, "web.sessions", "s1", []byte(`{"user":"x"}`)))
	must(src.KVPutValue(ctx, "greylist", "t/1", []byte(`{}`)))

	code, exported := call(t, srcSrv, "GET", "/api/settings/export", nil)
	if code != http.StatusOK {
		t.Fatalf("export: %d %s", code, exported)
	}
	for _, want := range []string{`"format": "tandem-settings"`, `"password_hash": "$2`, `"catch_all": "sales@abc.example"`, `"dns.zones"`, `"spam.meta"`} {
		if !bytes.Contains(exported, []byte(want)) {
			t.Errorf("export lacks %s", want)
		}
	}
	for _, volatile := range []string{"web.sessions", `"greylist"`} {
		if bytes.Contains(exported, []byte(volatile)) {
			t.Errorf("export holds volatile namespace %s", volatile)
		}
	}

	dstSrv, dst := w2Server(t, nil)
	code, body := call(t, dstSrv, "POST", "/api/settings/import", string(exported))
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	var rep SettingsReport
	json.Unmarshal(body, &rep)
	if rep.Domains.Created != 2 || rep.Accounts.Created != 3 || rep.Aliases.Created != 1 || rep.KV.Created != 3 || len(rep.Errors) != 0 {
		t.Fatalf("first import: %s", body)
	}
	if a, b := exportNoTime(t, src), exportNoTime(t, dst); !bytes.Equal(a, b) {
		t.Fatalf("re-export differs:\n%s\n---\n%s", a, b)
	}
	if _, err := dst.Authenticate(ctx, "tech@def.example", "pw3"); err != nil {
		t.Fatalf("imported password: %v", err)
	}
	if dst.KVCounter("spam.meta", "ham") != 42 {
		t.Fatalf("counter not restored")
	}

	// Again: nothing to do.
	code, body = call(t, dstSrv, "POST", "/api/settings/import", string(exported))
	json.Unmarshal(body, &rep)
	if code != http.StatusOK || rep.Domains.Unchanged != 2 || rep.Accounts.Unchanged != 3 || rep.Aliases.Unchanged != 1 ||
		rep.KV.Unchanged != 3 || rep.Domains.Created+rep.Accounts.Created+rep.KV.Created+rep.Accounts.Updated+rep.KV.Updated != 0 {
		t.Fatalf("second import: %d %s", code, body)
	}

	// Drift on the destination is brought back; extra items stay.
	name := "changed"
	_, err := dst.UpdateAccount(ctx, "sales@abc.example", storage.AccountUpdate{DisplayName: &name})
	must(err)
	must(dst.SetPassword(ctx, "tech@abc.example", "other"))
	must(dst.SetCatchAll(ctx, "abc.example", ""))
	must(dst.KVPutValue(ctx, "dns.zones", "abc.example", []byte(`{"records":[1]}`)))
	_, err = dst.AddAccount(ctx, storage.NewAccount{Address: "extra@abc.example", Password: "x"})
	must(err)
	code, body = call(t, dstSrv, "POST", "/api/settings/import", string(exported))
	json.Unmarshal(body, &rep)
	if code != http.StatusOK || rep.Accounts.Updated != 2 || rep.Domains.Updated != 1 || rep.KV.Updated != 1 {
		t.Fatalf("third import: %d %s", code, body)
	}
	if _, err := dst.Authenticate(ctx, "tech@abc.example", "pw1"); err != nil {
		t.Fatalf("password not restored: %v", err)
	}
	if _, err := dst.AccountByAddress("extra@abc.example"); err != nil {
		t.Fatalf("import deleted an account: %v", err)
	}
}

func TestSettingsImportRefusesBadFiles(t *testing.T) {
	srv, st := w2Server(t, nil)
	for _, c := range []struct{ body, want string }{
		{`not json`, "not a settings file"},
		{`{"format":"other","version":1}`, "not a Tandem settings file"},
		{`{"format":"tandem-settings","version":99}`, "version 99"},
		{`{"format":"tandem-settings","version":1,"extra":1}`, "unknown field"},
		{`{"format":"tandem-settings","version":1,"domains":[{"name":"bad domain"}]}`, "domains[0]"},
		{`{"format":"tandem-settings","version":1,"accounts":[{"address":"a@b.example","password_hash":"plain"}]}`, "bcrypt"},
		{`{"format":"tandem-settings","version":1,"accounts":[{"address":"nope","password_hash":"$2a$04$x"}]}`, "accounts[0]"},
		{`{"format":"tandem-settings","version":1,"aliases":[{"address":"a@b.example","targets":[]}]}`, "no targets"},
		{`{"format":"tandem-settings","version":1,"kv":[{"ns":"","key":"k","json":{}}]}`, "kv[0]"},
	} {
		code, body := call(t, srv, "POST", "/api/settings/import", c.body)
		if code != http.StatusBadRequest || !strings.Contains(errorOf(t, body), c.want) {
			t.Errorf("%s: %d %s", c.body, code, body)
		}
	}
	if ds, _ := st.Domains(); len(ds) != 0 {
		t.Fatalf("a refused file changed the store: %v", ds)
	}
}

func FuzzCheckSettings(f *testing.F) {
	f.Add([]byte(`{"format":"tandem-settings","version":1,"domains":[{"name":"a.example"}],"accounts":[{"address":"x@a.example","password_hash":"$2a$04$abc"}],"kv":[{"ns":"a","key":"b","base64":"AAE="}]}`))
	f.Add([]byte(`{"format":"tandem-settings","version":1,"kv":[{"ns":"a","key":"b","json":{"x":1},"base64":"AA=="}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var doc Settings
		if json.Unmarshal(raw, &doc) != nil {
			return
		}
		if CheckSettings(&doc) != nil {
			return
		}
		for _, e := range doc.KV {
			if e.NS == "" || e.Key == "" || len(e.value()) > storage.MaxKVValue {
				t.Fatalf("accepted kv entry %+v", e)
			}
		}
	})
}
