package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/protocols/pop3d"
	"github.com/tandemmail/tandem/protocols/smtpd"
)

// protocolServer is what every wire server offers the node.
type protocolServer interface {
	Serve(l net.Listener) error
	Close() error
}

type tlsServer interface {
	protocolServer
	ServeTLS(l net.Listener) error
}

// service is one listener of the node.
type service struct {
	name, flag, addr string
	srv              tlsServer
	implicitTLS      bool
}

func (n *Node) startServices() error {
	engine, err := n.startOutbound()
	if err != nil {
		return err
	}
	n.outbound.Store(engine)
	checks, err := n.filterChecks()
	if err != nil {
		return err
	}
	pipeline := filter.New(filter.Config{Store: n.store, Logger: n.log, MailLog: n.maillog, Outbound: n.signingOutbound(engine), Checks: checks,
		Gateway:            n.gatewayRouter(engine),   // node/gateway.go
		RcptRejectObserver: n.firewallRcptObserver()}) // node/firewall.go: dictionary attacks
	auth := smtpd.StoreAuth(n.store)
	smtpServer := func(mode smtpd.Mode) *smtpd.Server {
		return smtpd.New(smtpd.Config{Hostname: n.cfg.Hostname, TLSConfig: n.tls, Mode: mode,
			AllowInsecureAuth: n.cfg.AllowInsecureAuth, MaxMessageBytes: n.cfg.MaxMessageBytes,
			Logger: n.log.With("service", "smtp"), Deliverer: pipeline, Auth: auth,
			AuthGuard: smtpAuthGuard(n.firewallAuthGuard())}) // node/firewall.go
	}
	imapServer := n.imapServer
	pop := n.firewallPOP3(newPOP3Backend(n.store)) // node/firewall.go
	pop3Server := func() *pop3d.Server {
		return pop3d.New(pop3d.Config{Hostname: n.cfg.Hostname, TLSConfig: n.tls, AllowInsecureAuth: n.cfg.AllowInsecureAuth,
			Logger: n.log.With("service", "pop3"), Backend: pop})
	}
	var services []service
	if n.cfg.SMTPAddr != "" {
		services = append(services, service{"smtp", "--smtp-addr", n.cfg.SMTPAddr, smtpServer(smtpd.ModeMX), false})
	}
	if n.cfg.SubmissionAddr != "" {
		services = append(services, service{"submission", "--submission-addr", n.cfg.SubmissionAddr, smtpServer(smtpd.ModeSubmission), false})
	}
	if n.cfg.SubmissionsAddr != "" {
		services = append(services, service{"submissions", "--submissions-addr", n.cfg.SubmissionsAddr, smtpServer(smtpd.ModeSubmissions), true})
	}
	if imap := imapServer(); imap != nil && (n.cfg.IMAPAddr != "" || n.cfg.IMAPSAddr != "") {
		if n.cfg.IMAPAddr != "" {
			services = append(services, service{"imap", "--imap-addr", n.cfg.IMAPAddr, imap, false})
		}
		if n.cfg.IMAPSAddr != "" {
			services = append(services, service{"imaps", "--imaps-addr", n.cfg.IMAPSAddr, imap, true})
		}
	}
	if n.cfg.POP3Addr != "" || n.cfg.POP3SAddr != "" {
		p := pop3Server()
		if n.cfg.POP3Addr != "" {
			services = append(services, service{"pop3", "--pop3-addr", n.cfg.POP3Addr, p, false})
		}
		if n.cfg.POP3SAddr != "" {
			services = append(services, service{"pop3s", "--pop3s-addr", n.cfg.POP3SAddr, p, true})
		}
	}
	// Bind everything first so a port problem stops the start before any
	// service answers.
	listeners := make([]net.Listener, 0, len(services)+1)
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, s := range services {
		l, err := n.listen(s.name, s.flag, s.addr)
		if err != nil {
			closeAll()
			return err
		}
		if n.raft.Mux() != nil {
			// In a cluster the leader serves; followers relay (DESIGN §3).
			l = n.routed(s.name, l)
		}
		l = n.firewallListener(s.name, l) // node/firewall.go: connection limits, blocks
		listeners = append(listeners, l)
	}
	closed := map[protocolServer]bool{}
	for i, s := range services {
		s, l := s, listeners[i]
		if !closed[s.srv] {
			closed[s.srv] = true
			n.addCloser(s.srv.Close)
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			var err error
			if s.implicitTLS {
				err = s.srv.ServeTLS(l)
			} else {
				err = s.srv.Serve(l)
			}
			if err != nil && !isClosedErr(err) {
				n.log.Error("listener stopped", "service", s.name, "err", err)
			}
		}()
	}
	return n.startHTTP()
}

// startHTTP serves the status pages and health check (also on a witness).
func (n *Node) startHTTP() error {
	if n.cfg.HTTPAddr == "" {
		return n.startHTTPS() // node/web.go
	}
	l, err := n.listen("http", "--http-addr", n.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	// Long read/write limits: the web admin's account import uploads up to
	// 32 MiB and streams its progress while passwords are hashed.
	n.serveHTTP("http", &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 10 * time.Minute, WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute}, l)
	return n.startHTTPS() // node/web.go
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed)
}

// ListenerSummary lists the running services in a stable order, for the
// start-up message.
func (n *Node) ListenerSummary() []string {
	names := map[string]string{
		"smtp": "SMTP (inbound MX)", "submission": "Submission (STARTTLS)", "submissions": "Submission (TLS)",
		"imap": "IMAP (STARTTLS)", "imaps": "IMAP (TLS)", "pop3": "POP3 (STLS)", "pop3s": "POP3 (TLS)",
		"http": "Web admin (HTTP)", "https": "Web admin (HTTPS)",
	}
	order := []string{"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http", "https"}
	ls := n.Listeners()
	var out []string
	for _, k := range order {
		if a, ok := ls[k]; ok {
			out = append(out, fmt.Sprintf("%-22s %s", names[k], a))
		}
	}
	var extra []string
	for k, a := range ls {
		if _, ok := names[k]; !ok {
			extra = append(extra, fmt.Sprintf("%-22s %s", k, a))
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

// AdminURL is where an admin logs in to the web admin: HTTPS when it
// listens, else HTTP, with the node's host name ("" without either).
func (n *Node) AdminURL() string {
	ls := n.Listeners()
	for _, scheme := range []string{"https", "http"} {
		a, ok := ls[scheme]
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = n.cfg.Hostname // a wildcard listener: the box's name
		}
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			return scheme + "://" + host + "/"
		}
		return scheme + "://" + net.JoinHostPort(host, port) + "/"
	}
	return ""
}
