package pop3d

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

const (
	testUser     = "alice@example.test"
	testPassword = "pass word" // a space, as RFC 1939 §7 allows
)

// fakeBackend is an in-memory store of maildrops with a lock per user, like
// the real backend: Login locks, Close unlocks, Delete removes for good.
type fakeBackend struct {
	mu          sync.Mutex
	users       map[string]string
	mail        map[string][]fakeMessage
	uidValidity uint32
	locked      map[string]bool
	logins      int        // Login calls
	deletes     [][]uint32 // UIDs of each Delete call

	// Injected failures.
	loginErr    error
	messagesErr error
	openErr     error
	deleteErr   error
}

type fakeMessage struct {
	uid  uint32
	body string
}

// Bodies the fake treats specially.
const (
	bodyPanic   = "PANIC\r\n"      // Open panics
	bodyReadErr = "READ ERROR\r\n" // the reader fails after some bytes
)

// testMessages are alice's messages: plain, dot lines, bare LF, TOP fodder.
var testMessages = []string{
	"Subject: one\r\n\r\nfirst body\r\n.leading dot\r\n.\r\n..two\r\n",
	"Subject: two\r\nX-A: b\r\n\r\nl1\r\nl2\r\nl3\r\n",
	"Subject: bare\n\nlf only\n.dot\nno final newline",
}

func newFake() *fakeBackend {
	f := &fakeBackend{
		users:       map[string]string{testUser: testPassword, "bob@example.test": "bobpw"},
		mail:        map[string][]fakeMessage{},
		uidValidity: 1700000000,
		locked:      map[string]bool{},
	}
	for _, m := range testMessages {
		f.add(testUser, m)
	}
	f.add("bob@example.test", "Subject: bob\r\n\r\nhi\r\n")
	return f
}

// add appends a message with the next UID.
func (f *fakeBackend) add(user, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := f.mail[user]
	uid := uint32(1)
	if len(msgs) > 0 {
		uid = msgs[len(msgs)-1].uid + 1
	}
	f.mail[user] = append(msgs, fakeMessage{uid: uid, body: body})
}

func (f *fakeBackend) Login(ctx context.Context, user, password string, remote net.Addr) (Maildrop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins++
	if f.loginErr != nil {
		return nil, f.loginErr
	}
	if want, ok := f.users[user]; !ok || want != password {
		return nil, fmt.Errorf("login %q: %w", user, ErrAuthFailed)
	}
	if f.locked[user] {
		return nil, ErrInUse
	}
	f.locked[user] = true
	return &fakeDrop{f: f, user: user}, nil
}

// count is how many messages user has now.
func (f *fakeBackend) count(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mail[user])
}

func (f *fakeBackend) isLocked(user string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.locked[user]
}

func (f *fakeBackend) deleteCalls() [][]uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]uint32(nil), f.deletes...)
}

func (f *fakeBackend) loginCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins
}

type fakeDrop struct {
	f      *fakeBackend
	user   string
	closed bool
}

func (d *fakeDrop) Messages(context.Context) ([]MessageInfo, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.messagesErr != nil {
		return nil, d.f.messagesErr
	}
	var out []MessageInfo
	for _, m := range d.f.mail[d.user] {
		out = append(out, MessageInfo{ID: m.uid, UIDL: fmt.Sprintf("%d.%d", d.f.uidValidity, m.uid), Size: int64(len(m.body))})
	}
	return out, nil
}

func (d *fakeDrop) Open(_ context.Context, info MessageInfo) (io.ReadCloser, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.openErr != nil {
		return nil, d.f.openErr
	}
	for _, m := range d.f.mail[d.user] {
		if m.uid != info.ID {
			continue
		}
		switch m.body {
		case bodyPanic:
			panic("fake backend: Open panics")
		case bodyReadErr:
			return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n"), errReader{})), nil
		}
		return io.NopCloser(strings.NewReader(m.body)), nil
	}
	return nil, fmt.Errorf("uid %d: no such message", info.ID)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func (d *fakeDrop) Delete(_ context.Context, msgs []MessageInfo) error {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.deleteErr != nil {
		return d.f.deleteErr
	}
	var uids []uint32
	gone := map[uint32]bool{}
	for _, m := range msgs {
		uids = append(uids, m.ID)
		gone[m.ID] = true
	}
	d.f.deletes = append(d.f.deletes, uids)
	var keep []fakeMessage
	for _, m := range d.f.mail[d.user] {
		if !gone[m.uid] {
			keep = append(keep, m)
		}
	}
	d.f.mail[d.user] = keep
	return nil
}

func (d *fakeDrop) Close() error {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.closed {
		return errors.New("maildrop closed twice")
	}
	d.closed = true
	delete(d.f.locked, d.user)
	return nil
}
