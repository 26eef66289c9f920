package pop3d

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// command is one parsed command line (RFC 1939 §3): a case-insensitive
// keyword and arguments separated by spaces.
type command struct {
	name string   // the keyword, upper case
	rest string   // everything after the keyword and one space, verbatim
	args []string // rest split on spaces
}

// Parse errors; each becomes an -ERR reply.
var (
	errEmptyCommand = errors.New("empty command")
	errControlChar  = errors.New("control character in command")
	errBadKeyword   = errors.New("invalid command keyword")
)

// maxKeyword: RFC 1939 keywords have 3 or 4 characters; longer ones are
// reported as unknown, but past this they are not worth echoing.
const maxKeyword = 16

// parseCommand splits a command line, without its CRLF. It accepts any
// byte from 0x20 up except DEL (arguments may be UTF-8), and only letters
// in the keyword.
func parseCommand(line string) (command, error) {
	if line == "" {
		return command{}, errEmptyCommand
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			return command{}, errControlChar
		}
	}
	kw, rest, _ := strings.Cut(line, " ")
	if kw == "" || len(kw) > maxKeyword {
		return command{}, errBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		if c := kw[i] | 0x20; c < 'a' || c > 'z' {
			return command{}, errBadKeyword
		}
	}
	return command{name: strings.ToUpper(kw), rest: rest, args: strings.Fields(rest)}, nil
}

// states says where a command is allowed.
type states uint8

const (
	inAuthorization states = 1 << iota
	inTransaction
	anyState = inAuthorization | inTransaction
)

// spec describes a command: where it is allowed, how many arguments it
// takes (maxArgs -1: no limit, the handler reads rest), and its handler.
type spec struct {
	states           states
	minArgs, maxArgs int
	run              func(*session, command) error
}

// lookup is the command table (RFC 1939 §§4-7, RFC 2449, RFC 2595,
// RFC 5034).
func lookup(name string) (spec, bool) {
	switch name {
	case "CAPA":
		return spec{anyState, 0, 0, (*session).capa}, true
	case "QUIT":
		return spec{anyState, 0, 0, (*session).quit}, true
	case "USER":
		return spec{inAuthorization, 1, -1, (*session).userCmd}, true
	case "PASS":
		return spec{inAuthorization, 1, -1, (*session).passCmd}, true
	case "AUTH":
		return spec{inAuthorization, 0, 2, (*session).authCmd}, true
	case "STLS":
		return spec{inAuthorization, 0, 0, (*session).stls}, true
	case "STAT":
		return spec{inTransaction, 0, 0, (*session).stat}, true
	case "LIST":
		return spec{inTransaction, 0, 1, (*session).list}, true
	case "UIDL":
		return spec{inTransaction, 0, 1, (*session).uidl}, true
	case "RETR":
		return spec{inTransaction, 1, 1, (*session).retr}, true
	case "TOP":
		return spec{inTransaction, 2, 2, (*session).top}, true
	case "DELE":
		return spec{inTransaction, 1, 1, (*session).dele}, true
	case "RSET":
		return spec{inTransaction, 0, 0, (*session).rset}, true
	case "NOOP":
		return spec{inTransaction, 0, 0, (*session).noop}, true
	}
	return spec{}, false
}

// execute parses and runs one command line. The error ends the session.
func (s *session) execute(line string) error {
	cmd, err := parseCommand(line)
	if err != nil {
		return s.fail("%v", err)
	}
	sp, ok := lookup(cmd.name)
	switch {
	case !ok && cmd.name == "APOP":
		return s.fail("APOP is not supported; use USER/PASS or AUTH PLAIN")
	case !ok:
		return s.fail("unknown command")
	case sp.states&s.stateBit() == 0 && s.state == stateAuthorization:
		return s.fail("%s is only valid after login", cmd.name)
	case sp.states&s.stateBit() == 0:
		return s.fail("%s is not valid after login", cmd.name)
	case len(cmd.args) < sp.minArgs:
		return s.fail("%s needs an argument", cmd.name)
	case sp.maxArgs >= 0 && len(cmd.args) > sp.maxArgs:
		return s.fail("too many arguments for %s", cmd.name)
	}
	return sp.run(s, cmd)
}

func (s *session) stateBit() states {
	if s.state == stateTransaction {
		return inTransaction
	}
	return inAuthorization
}

// message resolves a message-number argument (RFC 1939 §5: numbers count
// from 1; deleted messages may not be named). ok false means the -ERR has
// been sent, and err is the write error if any.
func (s *session) message(arg string) (i int, ok bool, err error) {
	n, valid := parseDecimal(arg)
	switch {
	case !valid:
		return 0, false, s.fail("invalid message number %q", truncate(arg, 20))
	case n < 1 || n > uint64(len(s.msgs)):
		return 0, false, s.fail("no such message, only %d in maildrop", len(s.msgs))
	case s.deleted[n-1]:
		return 0, false, s.fail("message %d already deleted", n)
	}
	return int(n - 1), true, nil
}

// parseDecimal reads digits only (no sign, no spaces); values beyond
// uint64 saturate, as they name no message and mean "all lines" to TOP.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return ^uint64(0), true
	}
	return n, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// totals counts the messages not marked deleted and their octets.
func (s *session) totals() (n int, size int64) {
	for i, m := range s.msgs {
		if !s.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

// stat implements STAT (RFC 1939 §5).
func (s *session) stat(command) error {
	n, size := s.totals()
	return s.ok("%d %d", n, size)
}

// list implements LIST [msg] (RFC 1939 §5).
func (s *session) list(c command) error {
	return s.scanListing(c, "scan listing", func(m MessageInfo) string { return strconv.FormatInt(m.Size, 10) })
}

// uidl implements UIDL [msg] (RFC 1939 §7).
func (s *session) uidl(c command) error {
	return s.scanListing(c, "unique-id listing", func(m MessageInfo) string { return m.UIDL })
}

// scanListing answers LIST and UIDL: one line for a named message, or a
// multi-line listing of every message not marked deleted.
func (s *session) scanListing(c command, what string, field func(MessageInfo) string) error {
	if len(c.args) == 1 {
		i, ok, err := s.message(c.args[0])
		if !ok {
			return err
		}
		return s.ok("%d %s", i+1, field(s.msgs[i]))
	}
	n, size := s.totals()
	fmt.Fprintf(s.w, "+OK %d messages (%d octets), %s follows\r\n", n, size, what)
	for i, m := range s.msgs {
		if s.deleted[i] {
			continue
		}
		if _, err := fmt.Fprintf(s.w, "%d %s\r\n", i+1, field(m)); err != nil {
			return err // the client is gone; bufio would only repeat this
		}
	}
	return s.writeLine(".")
}

// retr implements RETR msg (RFC 1939 §5).
func (s *session) retr(c command) error {
	i, ok, err := s.message(c.args[0])
	if !ok {
		return err
	}
	return s.sendMessage(i, -1, fmt.Sprintf("%d octets", s.msgs[i].Size))
}

// top implements TOP msg n (RFC 1939 §7): the header, the blank line and
// the first n lines of the body.
func (s *session) top(c command) error {
	i, ok, err := s.message(c.args[0])
	if !ok {
		return err
	}
	n, valid := parseDecimal(c.args[1])
	if !valid {
		return s.fail("invalid line count %q", truncate(c.args[1], 20))
	}
	return s.sendMessage(i, int64(min(n, 1<<62)), "top of message follows")
}

// sendMessage sends message i, or with bodyLines >= 0 its top, as a
// dot-stuffed multi-line reply.
func (s *session) sendMessage(i int, bodyLines int64, status string) error {
	ctx, cancel := context.WithTimeout(s.ctx, openTimeout)
	defer cancel()
	rc, err := s.drop.Open(ctx, s.msgs[i])
	if err != nil {
		s.srv.log.Warn("pop3 open message", "client_ip", s.ip, "user", s.account, "uid", s.msgs[i].ID, "err", err)
		return s.failSys(err, "cannot read the message now, try again later")
	}
	defer rc.Close()
	s.w.WriteString("+OK " + status + "\r\n")
	if err := writeMessage(s.w, rc, bodyLines); err != nil {
		// The +OK is out: the only honest end is to drop the connection
		// without the terminating dot, so the client sees the failure.
		return fmt.Errorf("send message uid %d: %w", s.msgs[i].ID, err)
	}
	return s.writeLine(".")
}

// dele implements DELE msg (RFC 1939 §5): a mark, acted on only at QUIT.
func (s *session) dele(c command) error {
	i, ok, err := s.message(c.args[0])
	if !ok {
		return err
	}
	s.deleted[i] = true
	return s.ok("message %d deleted", i+1)
}

// rset implements RSET (RFC 1939 §5).
func (s *session) rset(command) error {
	clear(s.deleted)
	n, size := s.totals()
	return s.ok("maildrop has %d messages (%d octets)", n, size)
}

func (s *session) noop(command) error { return s.ok("") }

// quit implements QUIT. In TRANSACTION state it enters UPDATE (RFC 1939
// §6): the only place where messages are removed.
func (s *session) quit(command) error {
	if s.state != stateTransaction {
		s.ok("%s POP3 server signing off", s.srv.cfg.Hostname)
		return errQuit
	}
	var marked []MessageInfo
	for i, m := range s.msgs {
		if s.deleted[i] {
			marked = append(marked, m)
		}
	}
	if len(marked) > 0 {
		// The client asked for this; a server shutdown starting now must
		// not cut it short, only the timeout may.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), deleteTimeout)
		err := s.drop.Delete(ctx, marked)
		cancel()
		if err != nil {
			s.srv.log.Warn("pop3 delete at QUIT", "client_ip", s.ip, "user", s.account, "messages", len(marked), "err", err)
			s.failSys(err, "some deleted messages not removed")
			return errQuit
		}
	}
	s.srv.log.Info("pop3 logout", "client_ip", s.ip, "user", s.account, "deleted", len(marked))
	n, _ := s.totals()
	s.ok("%s POP3 server signing off (%d messages left)", s.srv.cfg.Hostname, n)
	return errQuit
}
