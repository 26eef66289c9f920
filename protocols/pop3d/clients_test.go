package pop3d

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pythonPOP talks to the server with Python's poplib: STLS, USER/PASS,
// every TRANSACTION command, and POP3_SSL. It prints one JSON object.
const pythonPOP = `
import json, poplib, ssl, sys
port, sport, user, pw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
d = lambda b: b.decode() if isinstance(b, bytes) else [x.decode() for x in b]
out = {}
c = poplib.POP3("127.0.0.1", port, timeout=10)
out["welcome"] = d(c.getwelcome())
out["capa_plain"] = sorted(c.capa())
try:
    c.user(user)
except poplib.error_proto as e:
    out["user_before_tls"] = d(e.args[0])
c.stls(context=ctx)
out["capa_tls"] = sorted(c.capa())
c.user(user)
try:
    c.pass_("wrong")
except poplib.error_proto as e:
    out["bad_pass"] = d(e.args[0])
c.user(user)
out["pass"] = d(c.pass_(pw))
out["stat"] = list(c.stat())
out["list"] = d(c.list()[1])
out["uidl"] = d(c.uidl()[1])
out["uidl2"] = d(c.uidl(2))
out["retr1"] = d(c.retr(1)[1])
out["retr3"] = d(c.retr(3)[1])
out["top2"] = d(c.top(2, 1)[1])
out["dele1"] = d(c.dele(1))
try:
    c.retr(1)
except poplib.error_proto as e:
    out["retr_deleted"] = d(e.args[0])
out["rset"] = d(c.rset())
out["noop"] = d(c.noop())
c.dele(3)
out["quit"] = d(c.quit())
s = poplib.POP3_SSL("127.0.0.1", sport, context=ctx, timeout=10)
s.user(user); s.pass_(pw)
out["ssl_uidl"] = d(s.uidl()[1])
s.quit()
print(json.dumps(out))
`

func TestPythonPoplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	ts := startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	_, port, _ := net.SplitHostPort(ts.plain)
	_, sport, _ := net.SplitHostPort(ts.tls)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, py, "-c", pythonPOP, port, sport, testUser, testPassword).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s\nserver log:\n%s", err, raw, ts.logs)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("poplib output %q: %v", raw, err)
	}
	want := map[string]any{
		"welcome":         "+OK pop.test POP3 server ready",
		"capa_plain":      []any{"AUTH-RESP-CODE", "IMPLEMENTATION", "PIPELINING", "RESP-CODES", "STLS", "TOP", "UIDL"},
		"user_before_tls": "-ERR [AUTH] plaintext authentication is disabled on unencrypted connections; issue STLS first",
		"capa_tls":        []any{"AUTH-RESP-CODE", "IMPLEMENTATION", "PIPELINING", "RESP-CODES", "SASL", "TOP", "UIDL", "USER"},
		"bad_pass":        "-ERR [AUTH] invalid user name or password",
		"pass":            "+OK maildrop has 3 messages (132 octets)",
		"stat":            []any{3.0, 132.0},
		"list":            []any{"1 52", "2 36", "3 44"},
		"uidl":            []any{"1 1700000000.1", "2 1700000000.2", "3 1700000000.3"},
		"uidl2":           "+OK 2 1700000000.2",
		"retr1":           []any{"Subject: one", "", "first body", ".leading dot", ".", "..two"},
		"retr3":           []any{"Subject: bare", "", "lf only", ".dot", "no final newline"},
		"top2":            []any{"Subject: two", "X-A: b", "", "l1"},
		"dele1":           "+OK message 1 deleted",
		"retr_deleted":    "-ERR message 1 already deleted",
		"rset":            "+OK maildrop has 3 messages (132 octets)",
		"noop":            "+OK ",
		"quit":            "+OK pop.test POP3 server signing off (2 messages left)",
		"ssl_uidl":        []any{"1 1700000000.1", "2 1700000000.2"},
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("poplib %s = %#v, want %#v", k, got[k], w)
		}
	}
	if calls := ts.fake.deleteCalls(); !reflect.DeepEqual(calls, [][]uint32{{3}}) {
		t.Errorf("Delete calls %v, want [[3]]", calls)
	}
}

// curl runs curl and returns its stdout and exit code.
func curl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--max-time", "20"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out) + stderr.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out), 0
}

func TestCurl(t *testing.T) {
	ts := startServer(t, nil)
	creds := testUser + ":" + testPassword
	plainURL, tlsURL := "pop3://"+ts.plain+"/", "pop3s://"+ts.tls+"/"

	// RETR, with curl undoing the dot-stuffing; AUTH PLAIN by continuation.
	if out, code := curl(t, plainURL+"1", "-u", creds); code != 0 || out != "Subject: one\r\n\r\nfirst body\r\n.leading dot\r\n.\r\n..two\r\n" {
		t.Errorf("curl RETR 1: exit %d, %q", code, out)
	}
	// AUTH PLAIN with an initial response.
	if out, code := curl(t, plainURL+"3", "-u", creds, "--sasl-ir"); code != 0 || out != "Subject: bare\r\n\r\nlf only\r\n.dot\r\nno final newline\r\n" {
		t.Errorf("curl RETR 3: exit %d, %q", code, out)
	}
	if out, code := curl(t, plainURL, "-u", creds); code != 0 || out != "1 52\r\n2 36\r\n3 44\r\n" {
		t.Errorf("curl LIST: exit %d, %q", code, out)
	}
	if out, code := curl(t, plainURL, "-X", "UIDL", "-u", creds); code != 0 || out != "1 1700000000.1\r\n2 1700000000.2\r\n3 1700000000.3\r\n" {
		t.Errorf("curl UIDL: exit %d, %q", code, out)
	}
	if out, code := curl(t, plainURL, "-X", "TOP 2 1", "-u", creds); code != 0 || out != "Subject: two\r\nX-A: b\r\n\r\nl1\r\n" {
		t.Errorf("curl TOP: exit %d, %q", code, out)
	}
	if out, code := curl(t, plainURL+"1", "-X", "DELE", "-I", "-u", creds); code != 0 {
		t.Errorf("curl DELE: exit %d, %q", code, out)
	}
	waitUnlocked(t, ts.fake, testUser) // curl sends QUIT as it exits
	if calls := ts.fake.deleteCalls(); !reflect.DeepEqual(calls, [][]uint32{{1}}) {
		t.Errorf("Delete calls after curl DELE: %v", calls)
	}
	// STLS, then LIST; and implicit TLS.
	if out, code := curl(t, "-k", "--ssl-reqd", plainURL, "-u", creds); code != 0 || out != "1 36\r\n2 44\r\n" {
		t.Errorf("curl STLS LIST: exit %d, %q", code, out)
	}
	if out, code := curl(t, "-k", tlsURL+"1", "-u", creds); code != 0 || !strings.HasPrefix(out, "Subject: two\r\n") {
		t.Errorf("curl pop3s RETR: exit %d, %q", code, out)
	}
	// curl exit 67: login denied.
	if out, code := curl(t, plainURL, "-u", testUser+":wrong"); code != 67 {
		t.Errorf("curl with a wrong password: exit %d, %q", code, out)
	}
}
