package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mail gateway mode (SPEC M9): mail for a gateway domain is filtered here
// and relayed to the domain's own backend mail hosts, tried in the order
// given, instead of being stored. The queue entry names the backends per
// recipient (storage.QueueRcpt.Relay), so a change of the domain's
// configuration never re-routes a message already accepted.

// MaxBackends bounds the backend list of one gateway domain.
const MaxBackends = 10

// ValidBackends checks a backend list: 1 to MaxBackends entries, each
// "host:port" with an LDH host name or an IP address and a port 1-65535.
func ValidBackends(backends []string) error {
	if len(backends) == 0 {
		return errors.New("at least one backend HOST:PORT is needed")
	}
	if len(backends) > MaxBackends {
		return fmt.Errorf("%d backends, at most %d", len(backends), MaxBackends)
	}
	seen := map[string]bool{}
	for _, b := range backends {
		host, port, err := splitBackend(b)
		if err != nil {
			return err
		}
		k := strings.ToLower(net.JoinHostPort(host, strconv.Itoa(port)))
		if seen[k] {
			return fmt.Errorf("backend %q is listed twice", b)
		}
		seen[k] = true
	}
	return nil
}

// splitBackend parses "host:port" ("[v6]:port" for IPv6 literals).
func splitBackend(b string) (string, int, error) {
	host, ps, err := net.SplitHostPort(b)
	if err != nil {
		return "", 0, fmt.Errorf("backend %q: want HOST:PORT", b)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("backend %q: port must be 1-65535", b)
	}
	if _, perr := netip.ParseAddr(host); perr != nil && !validHostname(host) {
		return "", 0, fmt.Errorf("backend %q: host must be a DNS name or an IP address", b)
	}
	return host, port, nil
}

// backendHosts resolves the backends in their configured order (no
// shuffling: the first is the primary, the others take over when it is
// down).
func (e *Engine) backendHosts(ctx context.Context, backends []string, rec *recorder) ([]mxHost, *failure) {
	var hosts []mxHost
	var lastErr error
	for _, b := range backends {
		host, port, err := splitBackend(b)
		if err != nil {
			lastErr = err
			continue
		}
		addrs, notFound, err := e.hostAddrs(ctx, host, rec)
		switch {
		case len(addrs) > 0:
			hosts = append(hosts, mxHost{Name: strings.ToLower(host), Addrs: addrs, Port: port})
		case notFound:
			lastErr = fmt.Errorf("backend %s not found in DNS", host)
		default:
			lastErr = fmt.Errorf("backend %s lookup: %v", host, err)
		}
	}
	if len(hosts) == 0 {
		// Our configuration or DNS is at fault, not the message: defer.
		return nil, tempFailure([3]int{4, 4, 3}, "no gateway backend reachable: %v", lastErr)
	}
	return hosts, nil
}

// CalloutResult is what a backend said about a recipient.
type CalloutResult struct {
	Valid   bool   // the backend accepted RCPT TO
	Backend string // the backend ("host:port") that answered
	Reply   string // its reply to RCPT TO
}

// ErrCalloutUnavailable: no backend could be asked, or every one answered
// with a temporary failure; the caller should answer 451 4.4.3.
var ErrCalloutUnavailable = errors.New("no backend could verify the recipient")

// calloutTimeout bounds each step of a callout: the client waiting on our
// RCPT reply is waiting on this.
const calloutTimeout = 20 * time.Second

// Callout asks the backends, in order, whether they accept addr: EHLO,
// MAIL FROM:<> (the null sender, so a backend that bounces never mails
// anyone, RFC 5321 §4.5.5), RCPT TO, then RSET and QUIT without sending a
// message. A 2xx or 5xx reply to RCPT decides; a backend that is down or
// answers 4xx makes the next one be asked. ctx bounds the whole exchange.
func (e *Engine) Callout(ctx context.Context, backends []string, addr string) (CalloutResult, error) {
	if strings.ContainsAny(addr, "\r\n\x00<>") {
		return CalloutResult{}, fmt.Errorf("callout: bad recipient address %q", addr)
	}
	if err := ValidBackends(backends); err != nil {
		return CalloutResult{}, fmt.Errorf("callout: %w", err)
	}
	var why []string
	for _, b := range backends {
		if ctx.Err() != nil {
			why = append(why, ctx.Err().Error())
			break
		}
		host, port, _ := splitBackend(b)
		rec := &recorder{t: &Transcript{}, now: e.cfg.Now}
		addrs, _, err := e.hostAddrs(ctx, host, rec)
		if len(addrs) == 0 {
			why = append(why, fmt.Sprintf("%s: address lookup: %v", b, err))
			continue
		}
		for _, a := range addrs {
			res, err := e.calloutOne(ctx, netip.AddrPortFrom(a, uint16(port)).String(), addr, rec)
			if err != nil {
				why = append(why, fmt.Sprintf("%s: %v", b, err))
				continue
			}
			res.Backend = b
			return res, nil
		}
	}
	e.log.Warn("outbound: recipient callout failed", "rcpt", addr, "why", strings.Join(why, "; "))
	return CalloutResult{}, fmt.Errorf("%w: %s", ErrCalloutUnavailable, strings.Join(why, "; "))
}

// calloutOne runs the dialogue with one address; an error means this
// address gave no definite answer.
func (e *Engine) calloutOne(ctx context.Context, hostport, rcpt string, rec *recorder) (CalloutResult, error) {
	dialer := net.Dialer{Timeout: min(e.cfg.Timeouts.Connect, calloutTimeout)}
	nc, err := dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return CalloutResult{}, fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	to := e.cfg.Timeouts
	to.Command = min(to.Command, calloutTimeout)
	c := newSMTPConn(nc, rec, to)
	r, err := c.readReply(min(to.Greeting, calloutTimeout))
	if err != nil {
		return CalloutResult{}, fmt.Errorf("greeting: %w", err)
	}
	if r.Code != 220 {
		return CalloutResult{}, fmt.Errorf("greeting: %s", r)
	}
	if r, err = c.hello(e.cfg.Hostname); err != nil || !r.positive() {
		return CalloutResult{}, fmt.Errorf("EHLO: %s %v", r, err)
	}
	if r, err = c.cmd("MAIL FROM:<>", to.Command); err != nil || !r.positive() {
		return CalloutResult{}, fmt.Errorf("MAIL FROM:<>: %s %v", r, err)
	}
	r, err = c.cmd("RCPT TO:<"+rcpt+">", to.Command)
	if err != nil {
		return CalloutResult{}, fmt.Errorf("RCPT TO: %w", err)
	}
	// RFC 5321 §4.1.1.5: RSET ends the transaction; nothing is sent.
	c.cmd("RSET", to.Command)
	c.quit()
	text := oneLine(r.String())
	switch {
	case r.positive():
		return CalloutResult{Valid: true, Reply: text}, nil
	case r.permanent():
		return CalloutResult{Valid: false, Reply: text}, nil
	}
	return CalloutResult{}, fmt.Errorf("RCPT TO: %s", text)
}
