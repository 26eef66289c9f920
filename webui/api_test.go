package webui

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"0", 0, false}, {"1024", 1024, false}, {"2G", 2 << 30, false},
		{"500m", 500 << 20, false}, {"1.5K", 1536, false}, {"10MB", 10 << 20, false},
		{"-1", 0, true}, {"lots", 0, true}, {"1Q", 0, true}, {"99999999T", 0, true},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad=%v", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestParseImport(t *testing.T) {
	in := "\ufeffaddress,password,name,quota\n" +
		"a@x.test,pw,\"Last, First\",1G\n" +
		"\n# comment\n" +
		"onlyaddress\n" +
		"b@x.test, pw2\n" +
		"c@x.test,pw,n,1G,extra\n" +
		"d@x.test,\"unterminated\n"
	rows, err := parseImport(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		addr string
		bad  bool
	}{{2, "a@x.test", false}, {5, "onlyaddress", true}, {6, "b@x.test", false}, {7, "c@x.test", true}, {8, "", true}}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.line != w.line || r.addr != w.addr || (r.error != "") != w.bad {
			t.Errorf("row %d = %+v; want %+v", i, r, w)
		}
	}
	if rows[0].name != "Last, First" || rows[0].quota != "1G" || rows[2].pw != "pw2" {
		t.Errorf("fields: %+v %+v", rows[0], rows[2])
	}
}

func TestAPI(t *testing.T) {
	s := storetest.New(t)
	srv := httptest.NewServer(NewAPI(APIConfig{Store: s, Status: func() any { return map[string]string{"ok": "yes"} }}))
	defer srv.Close()
	do := func(method, path, body string, wantCode int) string {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
		}
		if resp.StatusCode != wantCode {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, wantCode, sb.String())
		}
		return sb.String()
	}
	do("POST", "/api/domains", `{"name":"Example.TEST"}`, 201)
	do("POST", "/api/domains", `{"name":"example.test"}`, 409)
	do("POST", "/api/domains", `{"name":"bad domain"}`, 400)
	do("POST", "/api/domains", `{"nme":"x.test"}`, 400)
	do("POST", "/api/accounts", `{"address":"a@example.test","password":"pw","quota":"1G"}`, 201)
	do("POST", "/api/accounts", `{"address":"a@example.test","password":"pw"}`, 409)
	do("POST", "/api/accounts", `{"address":"b@nowhere.test","password":"pw"}`, 404)
	do("POST", "/api/accounts", `{"address":"b@example.test","password":""}`, 400)
	do("POST", "/api/accounts", `{"address":"b@example.test","password":"x","quota":"huge"}`, 400)
	out := do("GET", "/api/accounts?search=a%40", "", 200)
	if !strings.Contains(out, `"total": 1`) || !strings.Contains(out, `"quota_bytes": 1073741824`) {
		t.Errorf("list: %s", out)
	}
	do("PUT", "/api/accounts/a@example.test/password", `{"password":"new"}`, 204)
	if _, err := s.Authenticate(t.Context(), "a@example.test", "new"); err != nil {
		t.Errorf("password not changed: %v", err)
	}
	do("POST", "/api/aliases", `{"address":"all@example.test","targets":["a@example.test"]}`, 201)
	do("DELETE", "/api/domains/example.test", "", 409) // has accounts
	do("DELETE", "/api/accounts/nobody@example.test", "", 404)
	do("GET", "/api/nothing", "", 404)
	out = do("POST", "/api/accounts/import", "c@example.test,pw\nbad\nd@example.test,pw,D,5M\n", 200)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first, last ImportLine
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if first.Total != 3 || !last.Done || last.Created != 2 || last.Failed != 1 || len(lines) != 5 {
		t.Errorf("import:\n%s", out)
	}
	if out := do("GET", "/api/status", "", 200); !strings.Contains(out, `"ok": "yes"`) {
		t.Errorf("status %s", out)
	}
}

func TestQueueAndLogAPI(t *testing.T) {
	s := storetest.New(t)
	srv := httptest.NewServer(NewAPI(APIConfig{Store: s, Status: func() any { return nil }}))
	defer srv.Close()
	get := func(path string, want int) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
		}
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d want %d: %s", path, resp.StatusCode, want, sb.String())
		}
		return sb.String()
	}
	if out := get("/api/queue", 200); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty queue: %q", out)
	}
	get("/api/queue/nope", 404)
	get("/api/log?since=yesterday", 400)
	get("/api/log?limit=-3", 400)
	get("/api/log/transcript/nope", 404)
	s.LogAppend(t.Context(), storage.LogRecord{Time: time.Now(), QueueID: "Q9", Event: "received", Subject: "<script>x</script>"})
	if out := get("/api/log?since=1h&subject=script", 200); !strings.Contains(out, `"queue_id": "Q9"`) {
		t.Errorf("log search: %s", out)
	}
	resp, _ := http.Post(srv.URL+"/api/queue/Q9/bounce", "application/json", strings.NewReader("{}"))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("bounce without engine: %d", resp.StatusCode)
	}
}
