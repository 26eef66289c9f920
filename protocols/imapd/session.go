package imapd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// opTimeout bounds one storage call (a Raft apply waits for a leader).
const opTimeout = 30 * time.Second

// session is one IMAP connection's backend. go-imap calls its methods one
// at a time, except Idle, which runs while the command loop waits for
// DONE and never together with another command.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	log  *slog.Logger

	account *storage.Account // nil before login
	view    *mailboxView     // nil unless a mailbox is selected
	closed  bool
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func newSession(s *Server, c *imapserver.Conn) *session {
	log := s.log
	if nc := c.NetConn(); nc != nil {
		log = log.With("client_ip", remoteIP(nc.RemoteAddr()))
	}
	return &session{srv: s, conn: c, log: log}
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.String()
}

// ctx is the context of one storage call: the server's (cancelled on
// Close) with a deadline.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.srv.ctx, opTimeout)
}

// Close ends the session: go-imap calls it once per connection.
func (s *session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.view != nil {
		s.srv.reg.close(s.view)
		s.view = nil
	}
	s.srv.sessions.Done()
	return nil
}

// Login checks a password (also reached by AUTHENTICATE PLAIN). go-imap
// refuses it before TLS unless Config.AllowInsecureAuth.
func (s *session) Login(username, password string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	var ip net.IP
	if nc := s.conn.NetConn(); nc != nil {
		ip = remoteNetIP(nc.RemoteAddr())
	}
	if g := s.srv.cfg.AuthGuard; g != nil {
		if err := g.AllowAuth(ip, username); err != nil {
			s.log.Warn("imap: login refused by the firewall", "err", err)
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Too many failed logins, try again later"}
		}
	}
	acct, err := s.srv.cfg.Store.Authenticate(ctx, username, password)
	if err != nil {
		if errors.Is(err, storage.ErrAuthFailed) || errors.Is(err, storage.ErrNoAccount) || errors.Is(err, storage.ErrBadAddress) {
			if g := s.srv.cfg.AuthGuard; g != nil {
				g.AuthFailed(ip, username)
			}
			s.log.Info("imap: login failed", "user", truncateForLog(username))
			return imapserver.ErrAuthFailed
		}
		return s.storageError("login", err)
	}
	s.account = &acct
	s.log = s.log.With("account", acct.Address)
	s.log.Info("imap: login")
	return nil
}

// remoteNetIP is the client's IP for the firewall (nil when unknown).
func remoteNetIP(a net.Addr) net.IP {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

func truncateForLog(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Namespace: one personal namespace, "/" separated (RFC 2342).
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// AppendLimit is advertised as APPENDLIMIT= (RFC 7889) and enforced by
// go-imap before the literal is read.
func (s *session) AppendLimit() uint32 { return s.srv.cfg.AppendLimit }

// Select opens a mailbox (SELECT, or EXAMINE read-only).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if s.view != nil {
		s.srv.reg.close(s.view)
		s.view = nil
	}
	mb, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	view, err := s.srv.reg.open(mb, options.ReadOnly)
	if err != nil {
		return nil, s.storageError("select", err)
	}
	// Re-read after the view is built: UIDNEXT must exceed every UID the
	// view holds.
	if fresh, err := s.srv.cfg.Store.MailboxByID(mb.ID); err == nil {
		mb = fresh
	}
	s.view = view
	data := &imap.SelectData{
		Flags:          systemFlags,
		PermanentFlags: append(append([]imap.Flag(nil), systemFlags...), imap.FlagWildcard),
		NumMessages:    uint32(len(view.uids)),
		UIDNext:        imap.UID(mb.UIDNext),
		UIDValidity:    mb.UIDValidity,
		HighestModSeq:  mb.HighestModSeq,
	}
	if options.ReadOnly {
		data.PermanentFlags = nil
	}
	if n := len(view.uids); n > 0 && data.UIDNext <= imap.UID(view.uids[n-1]) {
		data.UIDNext = imap.UID(view.uids[n-1] + 1)
	}
	for _, t := range view.all() {
		if !hasFlag(t.msg.Flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = t.seq
			break
		}
	}
	return data, nil
}

// systemFlags are the FLAGS of every mailbox (RFC 9051 §2.3.2) plus the
// common keywords; any keyword may be stored (PERMANENTFLAGS \*).
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen,
	imap.FlagDraft, imap.FlagForwarded, imap.FlagJunk, imap.FlagNotJunk}

func (s *session) Unselect() error {
	if s.view != nil {
		s.srv.reg.close(s.view)
		s.view = nil
	}
	return nil
}

// Poll writes pending mailbox updates after each command.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.view == nil {
		return nil
	}
	return s.view.poll(w, allowExpunge)
}

// Idle pushes updates of the selected mailbox until DONE. A delivery
// reaches the client as soon as Raft applies it (storage.Watch).
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.view == nil {
		<-stop
		return nil
	}
	return s.view.idle(w, stop)
}

// lookup finds a mailbox of the logged-in account by client name.
func (s *session) lookup(raw string) (storage.Mailbox, error) {
	name, err := mailboxName(raw)
	if err != nil {
		return storage.Mailbox{}, badNameError(raw, err, false)
	}
	mb, err := s.srv.cfg.Store.Mailbox(s.account.ID, name)
	if err != nil {
		return storage.Mailbox{}, s.storageError("mailbox", err)
	}
	return mb, nil
}

// selected returns the view, or an error when the selected mailbox was
// deleted meanwhile.
func (s *session) selected() (*mailboxView, error) {
	if s.view == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "no mailbox selected"}
	}
	return s.view, nil
}

func (s *session) checkWritable() error {
	if s.view != nil && s.view.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "mailbox is read-only (EXAMINE)"}
	}
	return nil
}

func hasFlag(flags []string, f imap.Flag) bool {
	for _, x := range flags {
		if x == string(f) {
			return true
		}
	}
	return false
}
