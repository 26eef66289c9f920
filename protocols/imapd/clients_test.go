package imapd

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pythonScript drives the server with Python's imaplib, a client with its
// own parser and habits (quoting, literal handling, capability parsing).
// Every step asserts; the script prints PYTHON-OK at the end.
const pythonScript = `
import imaplib, ssl, sys, time, socket
host, port, tlsport, user, pw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def ok(res):
    typ, data = res
    assert typ == 'OK', (typ, data)
    return data

m = imaplib.IMAP4(host, port)
assert 'STARTTLS' in m.capabilities, m.capabilities
ok(m.login(user, pw))
caps = ok(m.capability())[0].decode().split()
for c in ['UIDPLUS', 'MOVE', 'SPECIAL-USE', 'NAMESPACE', 'IDLE', 'LIST-STATUS']:
    assert c in caps, (c, caps)
assert b'"/"' in ok(m.namespace())[0]
names = [l.decode() for l in ok(m.list())]
for n in ['INBOX', 'Sent', 'Trash', 'Archive']:
    assert any(l.endswith(' ' + n) or l.endswith(' "' + n + '"') for l in names), (n, names)
assert any('\\Sent' in l for l in names), names
ok(m.create('Py/Sub'))
typ, data = m.create('Py/../x')
assert typ == 'NO' and b'CANNOT' in data[0], (typ, data)
ok(m.rename('Py/Sub', 'Py/Renamed'))
ok(m.subscribe('Py/Renamed'))
assert any(b'Py/Renamed' in l for l in ok(m.lsub('""', '*')))
msg = b'From: py@example.org\r\nSubject: from python\r\n\r\nhello from imaplib\r\n'
typ, data = m.append('INBOX', '(\\Flagged)', imaplib.Time2Internaldate(time.time()), msg)
assert typ == 'OK' and b'APPENDUID' in data[0], (typ, data)
count = int(ok(m.select('INBOX'))[0])
assert count >= 1, count
nums = ok(m.search(None, 'SUBJECT', '"from python"'))[0].split()
assert len(nums) == 1, nums
n = nums[0]
data = ok(m.fetch(n, '(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE INTERNALDATE BODY.PEEK[])'))
head, body = data[0]
assert body == msg, body
assert b'RFC822.SIZE %d' % len(msg) in head, head
assert b'"from python"' in head and b'\\Flagged' in head, head
uid = head.split(b'UID ')[1].split()[0].decode()
assert ok(m.uid('SEARCH', None, 'ALL'))[0].split()[-1].decode() == uid
assert ok(m.uid('SEARCH', None, 'BODY', 'IMAPLIB'))[0].decode() == uid
ok(m.store(n, '+FLAGS', '\\Seen'))
assert b'\\Seen' in ok(m.fetch(n, '(FLAGS)'))[0]
ok(m.uid('COPY', uid, 'Archive'))
typ, data = m.response('COPYUID')
assert data and data[0], (typ, data)
ok(m.uid('MOVE', uid, 'Trash'))
st = ok(m.status('Trash', '(MESSAGES UIDNEXT)'))[0]
assert b'MESSAGES 1' in st, st
ok(m.select('Trash'))
ok(m.store('1', '+FLAGS', '\\Deleted'))
assert ok(m.expunge()) == [b'1']
ok(m.close())
ok(m.delete('Py/Renamed'))

# IDLE by hand (imaplib 3.11 has no idle()): the Go side delivers once
# it reads IDLING.
ok(m.select('INBOX'))
tag = m._new_tag()
m.send(tag + b' IDLE\r\n')
assert m.readline().startswith(b'+'), 'no continuation'
print('IDLING', flush=True)
m.sock.settimeout(5)
line = m.readline()
while b'EXISTS' not in line:
    line = m.readline()
m.send(b'DONE\r\n')
while not m.readline().startswith(tag):
    pass
m.logout()

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = imaplib.IMAP4_SSL(host, tlsport, ssl_context=ctx)
ok(s.login(user, pw))
ok(s.select('INBOX', readonly=True))
s.logout()
t = imaplib.IMAP4(host, port)
ok(t.starttls(ssl_context=ctx))
ok(t.login(user, pw))
t.logout()
b = imaplib.IMAP4(host, port)
try:
    b.login(user, 'wrong')
    raise SystemExit('wrong password accepted')
except imaplib.IMAP4.error as e:
    assert 'AUTHENTICATIONFAILED' in str(e), e
print('PYTHON-OK')
`

func TestPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonScript), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(e.addr)
	_, tlsPort, _ := net.SplitHostPort(e.tlsAddr)
	cmd := exec.Command(py, script, "127.0.0.1", port, tlsPort, testUser, testPass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "IDLING" {
			e.deliver("Subject: pushed to python\r\n\r\nhi\r\n")
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("python timed out")
	}
	if err != nil || len(lines) == 0 || lines[len(lines)-1] != "PYTHON-OK" {
		t.Fatalf("imaplib: %v\nstdout: %s\nstderr: %s", err, strings.Join(lines, "\n"), stderr.String())
	}
}

// TestCurl uses curl's IMAP support: LIST, custom commands, fetch by
// UID and section, upload (APPEND), STARTTLS and imaps://.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t)
	msg := "From: c@example.org\r\nSubject: curl me\r\n\r\nbody via curl\r\n"
	e.appendMsg("INBOX", msg, nil, time.Time{})
	e.appendMsg("INBOX", "Subject: second\r\n\r\ntwo\r\n", nil, time.Time{})
	base := "imap://" + e.addr
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(curl, append([]string{"-s", "-S", "--max-time", "10", "-u", testUser + ":" + testPass}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{base + "/"}, "INBOX"},
		{[]string{base + "/INBOX", "-X", "UID SEARCH ALL"}, "* SEARCH 1 2"},
		{[]string{base + "/INBOX", "-X", "SEARCH SUBJECT second"}, "* SEARCH 2"},
		{[]string{base + "/INBOX;UID=1"}, msg},
		{[]string{base + "/INBOX;UID=1;SECTION=TEXT"}, "body via curl\r\n"},
		{[]string{base + "/INBOX;UID=2;SECTION=HEADER.FIELDS%20(SUBJECT)"}, "Subject: second"},
		{[]string{base + "/", "-X", "STATUS INBOX (MESSAGES UIDNEXT)"}, "MESSAGES 2 UIDNEXT 3"},
		{[]string{base + "/", "-X", "CREATE Curl/Made"}, ""},
		{[]string{base + "/", "-X", "LIST \"\" Curl/*"}, "Curl/Made"},
		{[]string{"--ssl-reqd", "-k", base + "/INBOX;UID=2"}, "two"},
		{[]string{"-k", "imaps://" + e.tlsAddr + "/INBOX;UID=1"}, msg},
	} {
		out, err := run(tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("curl %v: %v\n%s", tc.args, err, out)
		}
	}
	// Upload is APPEND.
	file := filepath.Join(t.TempDir(), "up.eml")
	os.WriteFile(file, []byte("Subject: uploaded\r\n\r\nby curl -T\r\n"), 0o600)
	if out, err := run("-T", file, base+"/Archive"); err != nil {
		t.Fatalf("curl -T: %v %s", err, out)
	}
	if out, _ := run(base+"/Archive", "-X", "SEARCH SUBJECT uploaded"); !strings.Contains(out, "* SEARCH 1") {
		t.Errorf("uploaded message not found: %s", out)
	}
	// A wrong password: curl's "login denied" (exit 67).
	cmd := exec.Command(curl, "-s", "--max-time", "10", "-u", testUser+":wrong", base+"/")
	if err := cmd.Run(); err == nil {
		t.Error("curl with a wrong password succeeded")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 {
		t.Errorf("curl wrong password: %v", err)
	}
}
