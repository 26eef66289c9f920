package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tandemmail/tandem/storage"
)

// rcptOutcome is what one attempt decided for one recipient.
type rcptOutcome struct {
	Addr      string
	Status    string // storage.RcptDelivered, RcptFailed or RcptPending
	Code      int
	Enh       [3]int
	Text      string
	RemoteMTA string // the host that answered, "" if none did
}

// String is the outcome as stored in the queue and shown in DSNs.
func (o rcptOutcome) String() string {
	s := fmt.Sprintf("%d %d.%d.%d %s", o.Code, o.Enh[0], o.Enh[1], o.Enh[2], o.Text)
	if o.RemoteMTA != "" {
		s += " (" + o.RemoteMTA + ")"
	}
	return s
}

func fromFailure(addr string, f *failure, mta string) rcptOutcome {
	st := storage.RcptPending
	if f.Perm {
		st = storage.RcptFailed
	}
	return rcptOutcome{Addr: addr, Status: st, Code: f.Code, Enh: f.Enh, Text: f.Msg, RemoteMTA: mta}
}

func fromReply(addr string, r reply, mta string) rcptOutcome {
	o := rcptOutcome{Addr: addr, Code: r.Code, Enh: r.Enh, RemoteMTA: mta}
	for i, l := range r.Lines {
		if i > 0 {
			o.Text += " "
		}
		o.Text += l
	}
	switch {
	case r.positive():
		o.Status = storage.RcptDelivered
	case r.permanent():
		o.Status = storage.RcptFailed
	default:
		o.Status = storage.RcptPending
	}
	if o.Enh[0] == 0 {
		o.Enh = [3]int{r.Code / 100, 0, 0}
	}
	return o
}

// tlsPolicy says how a destination is reached.
type tlsPolicy struct {
	Mode   string // "opportunistic", TLSStartTLS (required), TLSImplicit or TLSNone
	Verify bool   // fail unless the certificate is valid for the host name
}

// destination is a set of recipients of one message that one connection
// carries: those of one domain, or all those routed to one smarthost.
type destination struct {
	Name   string // recipient domain, or the smarthost "host:port"
	Domain string // for MX routing
	Smart  *Smarthost
	Relay  []string // gateway backends "host:port", in order (SPEC M9)
	Rcpts  []string
}

// sessionResult is how an attempt at one address ended.
type sessionResult struct {
	results   map[string]rcptOutcome // set when a transaction ran
	fail      *failure               // otherwise, why not
	tryNext   bool                   // another address may do better
	tlsFailed bool                   // opportunistic TLS broke: retry this address in plain text
	keep      bool                   // the session ended cleanly: the connection may be reused
	conn      *smtpConn
}

// deliverRemote makes one attempt for a destination: it tries its
// addresses in order until one runs a transaction.
func (e *Engine) deliverRemote(ctx context.Context, qe storage.QueueEntry, d destination, rec *recorder) map[string]rcptOutcome {
	if res, ok := e.reuse(ctx, qe, d, rec); ok {
		return res
	}
	var hosts []mxHost
	var f *failure
	pol := tlsPolicy{Mode: "opportunistic"}
	port := e.cfg.Port
	if d.Relay != nil {
		hosts, f = e.backendHosts(ctx, d.Relay, rec)
	} else if d.Smart != nil {
		pol = tlsPolicy{Mode: d.Smart.TLS, Verify: !d.Smart.InsecureSkipVerify}
		port = d.Smart.Port
		addrs, notFound, err := e.hostAddrs(ctx, d.Smart.Host, rec)
		switch {
		case len(addrs) > 0:
			hosts = []mxHost{{Name: d.Smart.Host, Addrs: addrs}}
		case notFound:
			f = tempFailure([3]int{4, 4, 4}, "smarthost %s not found in DNS", d.Smart.Host)
		default:
			f = tempFailure([3]int{4, 4, 3}, "smarthost %s lookup: %v", d.Smart.Host, err)
		}
	} else {
		if e.strict[d.Domain] {
			pol = tlsPolicy{Mode: TLSStartTLS, Verify: true}
		}
		hosts, f = e.mxHosts(ctx, d.Domain, rec)
	}
	all := func(f *failure, mta string) map[string]rcptOutcome {
		out := map[string]rcptOutcome{}
		for _, r := range d.Rcpts {
			out[r] = fromFailure(r, f, mta)
		}
		return out
	}
	if f != nil {
		return all(f, "")
	}
	tried := 0
	last := tempFailure([3]int{4, 4, 1}, "no address could be tried")
	lastHost := ""
	for _, h := range hosts {
		for _, a := range h.Addrs {
			if tried >= e.cfg.MaxAddresses || ctx.Err() != nil {
				return all(last, lastHost)
			}
			tried++
			p := port
			if h.Port != 0 {
				p = h.Port
			}
			addr := netip.AddrPortFrom(a, uint16(p)).String()
			res := e.tryAddress(ctx, qe, d, h.Name, addr, pol, rec)
			if res.tlsFailed && !pol.Verify && pol.Mode == "opportunistic" {
				// RFC 7435 §1.3: opportunistic security never does worse
				// than plain text; a broken TLS stack must not stop mail.
				rec.note("retrying " + addr + " without STARTTLS after a TLS failure")
				res = e.tryAddress(ctx, qe, d, h.Name, addr, tlsPolicy{Mode: TLSNone}, rec)
			}
			if res.results != nil {
				return res.results
			}
			last, lastHost = res.fail, h.Name
			if !res.tryNext {
				return all(last, lastHost)
			}
		}
	}
	return all(last, lastHost)
}

// tryAddress connects to one address and runs a session.
func (e *Engine) tryAddress(ctx context.Context, qe storage.QueueEntry, d destination, host, addr string, pol tlsPolicy, rec *recorder) sessionResult {
	try := AddressTry{Host: host, Addr: addr}
	dialer := net.Dialer{Timeout: e.cfg.Timeouts.Connect}
	nc, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		try.Error = err.Error()
		rec.t.Addresses = append(rec.t.Addresses, try)
		return sessionResult{fail: tempFailure([3]int{4, 4, 1}, "connect to %s: %v", addr, err), tryNext: true}
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	rec.note("connected to " + host + " " + addr)
	res := e.session(ctx, nc, qe, d, host, addr, pol, rec)
	if res.fail != nil && res.results == nil {
		try.Error = res.fail.String()
	}
	rec.t.Addresses = append(rec.t.Addresses, try)
	if stop() && res.keep && ctx.Err() == nil {
		rec.kept = append(rec.kept, keptConn{d, res.conn, 1})
	} else {
		nc.Close()
	}
	return res
}

// tlsClientConfig verifies the certificate itself so that opportunistic
// TLS can record whether it was valid (RFC 7435) and strict TLS can refuse
// it.
func (e *Engine) tlsClientConfig(host string, pol tlsPolicy, verified *bool, verr *error) *tls.Config {
	cfg := e.tlsConfig()
	cfg.ServerName = host
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			*verr = errors.New("no certificate")
		} else {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, *verr = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: e.cfg.RootCAs, Intermediates: inter})
		}
		*verified = *verr == nil
		if pol.Verify && *verr != nil {
			return *verr
		}
		return nil
	}
	return cfg
}

func (e *Engine) session(ctx context.Context, nc net.Conn, qe storage.QueueEntry, d destination, host, addr string, pol tlsPolicy, rec *recorder) sessionResult {
	to := e.cfg.Timeouts
	var verified bool
	var verr error
	tcfg := e.tlsClientConfig(host, pol, &verified, &verr)
	desc := "none"
	if pol.Mode == TLSImplicit {
		tc := tls.Client(nc, tcfg)
		hctx, cancel := context.WithTimeout(ctx, to.Command)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			rec.tls("failed: " + err.Error())
			return sessionResult{fail: tempFailure([3]int{4, 7, 5}, "TLS with %s: %v", host, err), tryNext: true}
		}
		st := tc.ConnectionState()
		desc = tlsDescription(&st, verified, verr)
		rec.tls(desc)
		nc = tc
	}
	c := newSMTPConn(nc, rec, to)
	c.host, c.addr, c.tlsDesc = host, addr, desc
	temp := func(enh [3]int, format string, a ...any) sessionResult {
		return sessionResult{fail: tempFailure(enh, format, a...), tryNext: true}
	}
	byReply := func(what string, r reply) sessionResult {
		f := &failure{Perm: r.permanent(), Code: r.Code, Enh: r.Enh, Msg: what + ": " + fromReply("", r, "").Text}
		if f.Enh[0] == 0 {
			f.Enh = [3]int{r.Code / 100, 0, 0}
		}
		c.quit()
		return sessionResult{fail: f, tryNext: true}
	}
	r, err := c.readReply(to.Greeting)
	if err != nil {
		return temp([3]int{4, 4, 2}, "greeting from %s: %v", host, err)
	}
	if r.Code != 220 {
		return byReply("greeting", r)
	}
	if r, err = c.hello(e.cfg.Hostname); err != nil {
		return temp([3]int{4, 4, 2}, "EHLO to %s: %v", host, err)
	} else if !r.positive() {
		return byReply("EHLO", r)
	}
	switch {
	case pol.Mode == TLSImplicit || pol.Mode == TLSNone:
		if pol.Mode == TLSNone {
			rec.tls("none")
		}
	case c.has("STARTTLS"):
		r, err := c.startTLS(ctx, tcfg)
		if err == nil && r.Code != 220 {
			err = fmt.Errorf("STARTTLS refused: %s", r)
		}
		if err != nil {
			rec.tls("failed: " + err.Error())
			if pol.Mode == "opportunistic" {
				return sessionResult{fail: tempFailure([3]int{4, 7, 5}, "STARTTLS with %s: %v", host, err), tryNext: true, tlsFailed: true}
			}
			return temp([3]int{4, 7, 5}, "STARTTLS with %s: %v", host, err)
		}
		c.tlsDesc = tlsDescription(c.tls, verified, verr)
		rec.tls(c.tlsDesc)
		// RFC 3207 §4.2: forget what was said before TLS; ask again.
		if r, err = c.hello(e.cfg.Hostname); err != nil {
			return temp([3]int{4, 4, 2}, "EHLO after STARTTLS to %s: %v", host, err)
		} else if !r.positive() {
			return byReply("EHLO", r)
		}
	case pol.Mode == TLSStartTLS:
		rec.tls("none: STARTTLS required but not offered")
		c.quit()
		return temp([3]int{4, 7, 10}, "%s does not offer STARTTLS, which is required for %s", host, d.Name)
	default:
		rec.tls("none: not offered")
	}
	if d.Smart != nil && d.Smart.Username != "" {
		if pol.Mode == TLSNone {
			c.quit()
			return sessionResult{fail: tempFailure([3]int{4, 7, 0}, "refusing to send smarthost credentials without TLS")}
		}
		r, err := c.auth(d.Smart.Username, d.Smart.Password)
		if err != nil {
			return sessionResult{fail: tempFailure([3]int{4, 7, 0}, "AUTH at %s: %v", host, err)}
		}
		if r.Code != 235 {
			c.quit()
			// Our configuration is wrong, not the message: defer so the
			// admin can fix it (RFC 4954 §6 codes are not the sender's fault).
			return sessionResult{fail: tempFailure([3]int{4, 7, 8}, "AUTH at %s refused: %s", host, r)}
		}
	}
	return e.transaction(c, qe, d, host)
}

// transaction sends MAIL, RCPT and DATA (pipelined when offered, RFC 2920)
// and maps the replies to per-recipient outcomes.
func (e *Engine) transaction(c *smtpConn, qe storage.QueueEntry, d destination, host string) sessionResult {
	to := e.cfg.Timeouts
	all := func(f *failure) sessionResult {
		out := map[string]rcptOutcome{}
		for _, r := range d.Rcpts {
			out[r] = fromFailure(r, f, host)
		}
		return sessionResult{results: out}
	}
	if v, ok := c.ext["SIZE"]; ok {
		// RFC 1870 §4: a message larger than the announced limit fails.
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && qe.Size > n {
			c.quit()
			return all(permFailure(552, [3]int{5, 3, 4}, "message of %d bytes exceeds %s's limit of %d", qe.Size, host, n))
		}
	}
	if strings.ContainsAny(qe.From, "\r\n\x00<>") {
		// The reverse-path was checked at submission; never let one
		// carry a second command or MAIL parameter onto the wire.
		c.quit()
		return all(permFailure(553, [3]int{5, 1, 7}, "bad sender address"))
	}
	needUTF8 := !isASCII(qe.From)
	for _, r := range d.Rcpts {
		needUTF8 = needUTF8 || !isASCII(r)
	}
	if needUTF8 && !c.has("SMTPUTF8") {
		c.quit()
		return all(permFailure(553, [3]int{5, 6, 7}, "%s does not support SMTPUTF8, needed for non-ASCII addresses (RFC 6531 §3.2)", host))
	}
	if qe.Body8BIT && !c.has("8BITMIME") {
		c.quit()
		return all(permFailure(554, [3]int{5, 6, 3}, "%s does not support 8BITMIME and the message has 8-bit content (RFC 6152 §3)", host))
	}
	mail := "MAIL FROM:<" + qe.From + ">"
	if c.has("SIZE") && qe.Size > 0 {
		mail += " SIZE=" + strconv.FormatInt(qe.Size, 10)
	}
	if qe.Body8BIT {
		mail += " BODY=8BITMIME"
	}
	if needUTF8 || qe.SMTPUTF8 && c.has("SMTPUTF8") {
		mail += " SMTPUTF8"
	}
	pipelining := c.has("PIPELINING")
	broken := func(err error) sessionResult {
		return all(tempFailure([3]int{4, 4, 2}, "connection to %s: %v", host, err))
	}
	// With PIPELINING, MAIL, every RCPT and DATA go in one write and the
	// replies are read in order (RFC 2920 §3.1). Without it, one by one.
	if err := c.write(mail, mail); err != nil {
		return all(permFailure(553, [3]int{5, 1, 7}, "bad sender address: %v", err))
	}
	send := func() error {
		if pipelining {
			return nil
		}
		return c.flush(to.Command)
	}
	if err := send(); err != nil {
		return broken(err)
	}
	var mr reply
	if !pipelining {
		var err error
		if mr, err = c.readReply(to.Command); err != nil {
			return broken(err)
		}
		if !mr.positive() {
			c.quit()
			return allReply(d.Rcpts, mr, host)
		}
	}
	out := map[string]rcptOutcome{}
	var accepted []string
	rcptReplies := make([]reply, len(d.Rcpts))
	for i, r := range d.Rcpts {
		line := "RCPT TO:<" + r + ">"
		if err := c.write(line, line); err != nil {
			out[r] = fromFailure(r, permFailure(553, [3]int{5, 1, 3}, "bad recipient address: %v", err), "")
			rcptReplies[i].Code = -1
			continue
		}
		if pipelining {
			continue
		}
		if err := c.flush(to.Command); err != nil {
			return broken(err)
		}
		rr, err := c.readReply(to.Command)
		if err != nil {
			return broken(err)
		}
		rcptReplies[i] = rr
	}
	if pipelining {
		if err := c.write("DATA", "DATA"); err != nil {
			return broken(err)
		}
		if err := c.flush(to.Command); err != nil {
			return broken(err)
		}
		var err error
		if mr, err = c.readReply(to.Command); err != nil {
			return broken(err)
		}
		for i := range d.Rcpts {
			if rcptReplies[i].Code == -1 {
				continue
			}
			if rcptReplies[i], err = c.readReply(to.Command); err != nil {
				return broken(err)
			}
		}
	}
	for i, r := range d.Rcpts {
		switch rr := rcptReplies[i]; {
		case rr.Code == -1:
		case !mr.positive():
			out[r] = fromReply(r, mr, host)
		case rr.positive():
			accepted = append(accepted, r)
		default:
			out[r] = fromReply(r, rr, host)
		}
	}
	var dr reply
	var err error
	if pipelining {
		dr, err = c.readReply(to.DataInit)
	} else if len(accepted) > 0 {
		dr, err = c.cmd("DATA", to.DataInit)
	}
	if err != nil {
		return broken(err)
	}
	if len(accepted) == 0 {
		if dr.Code == 354 {
			// RFC 2920 §3.1: DATA was accepted though no recipient was;
			// end it empty, the remote then refuses the transaction.
			c.rec.client(".")
			newDataWriter(c.bw).Close()
			c.readReply(to.DataEnd)
		}
		c.quit()
		return sessionResult{results: out}
	}
	if dr.Code != 354 {
		c.quit()
		for _, r := range accepted {
			out[r] = fromReply(r, dr, host)
		}
		return sessionResult{results: out}
	}
	final, err := e.sendBody(c, qe)
	if err != nil {
		// At-least-once: without the final reply nothing is known to be
		// delivered, so the message is tried again (RFC 5321 §6.1).
		return broken(fmt.Errorf("during DATA: %w", err))
	}
	for _, r := range accepted {
		out[r] = fromReply(r, final, host)
	}
	if final.Code == 421 {
		// RFC 5321 §3.8: the remote is closing the channel.
		return sessionResult{results: out}
	}
	return sessionResult{results: out, keep: true, conn: c}
}

func allReply(rcpts []string, r reply, host string) sessionResult {
	out := map[string]rcptOutcome{}
	for _, a := range rcpts {
		out[a] = fromReply(a, r, host)
	}
	return sessionResult{results: out}
}

// sendBody streams the stored message after "354" and reads the final
// reply. The body is not recorded in the transcript.
func (e *Engine) sendBody(c *smtpConn, qe storage.QueueEntry) (reply, error) {
	f, err := e.cfg.Store.OpenBlob(qe.Blob)
	if err != nil {
		return reply{}, err
	}
	defer f.Close()
	c.writeTimeout = e.cfg.Timeouts.DataBlock
	dw := newDataWriter(c.bw)
	if _, err := io.Copy(dw, f); err != nil {
		return reply{}, err
	}
	if err := dw.Close(); err != nil {
		return reply{}, err
	}
	c.rec.note(fmt.Sprintf("[message body, %d bytes, not recorded]", dw.n))
	c.rec.client(".")
	return c.readReply(e.cfg.Timeouts.DataEnd)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
