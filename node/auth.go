package node

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/auth"
)

// authChecks adds inbound sender verification (SPEC F4: SPF, DKIM, DMARC;
// filter/auth) as a message check. Its Authentication-Results field is
// prepended to the delivered message, its results go to the mail log and
// into the spam score, and DMARC p=reject is refused at DATA unless
// --dmarc-enforce=false. Authenticated submissions are skipped by the
// stage itself.
func (n *Node) authChecks(c *filter.Checks) error {
	c.Message = append(c.Message, auth.NewStage(auth.StageConfig{
		Resolver: n.authResolver(),
		Hostname: n.cfg.Hostname,
		Enforce:  !n.cfg.DMARCMonitorOnly,
		Logger:   n.log.With("stage", "auth"),
	}))
	return nil
}

// authResolver is the DNS the sender checks use: the --dns-resolver server
// when given (tests, a local validating resolver), else the system's.
func (n *Node) authResolver() auth.Resolver {
	if n.cfg.DNSResolver != "" {
		return auth.NewDNSResolver(n.cfg.DNSResolver, 5*time.Second)
	}
	return &systemResolver{r: net.DefaultResolver, timeout: sysDNSTimeout}
}

// systemResolver adapts net.Resolver (whose errors already are
// *net.DNSError with IsNotFound) to auth.Resolver. Each question gets 3 s;
// after 3 timeouts in a row it answers "temporary failure" at once for
// 30 s, so a dead resolver costs each message nothing instead of the
// whole stage timeout (the checks then report temperror, which never
// rejects).
type systemResolver struct {
	r        *net.Resolver
	timeout  time.Duration // per question
	timeouts atomic.Int32
	openTill atomic.Int64 // unix nanoseconds
}

const (
	sysDNSTimeout  = 3 * time.Second
	sysDNSTrip     = 3
	sysDNSCoolDown = 30 * time.Second
)

func lookup[T any](s *systemResolver, ctx context.Context, name string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	if time.Now().UnixNano() < s.openTill.Load() {
		return zero, &net.DNSError{Err: "resolver not answering", Name: name, IsTemporary: true, IsTimeout: true}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := f(ctx)
	var de *net.DNSError
	if err != nil && errors.As(err, &de) && de.IsTimeout {
		if s.timeouts.Add(1) >= sysDNSTrip {
			s.openTill.Store(time.Now().Add(sysDNSCoolDown).UnixNano())
			s.timeouts.Store(0)
		}
	} else {
		s.timeouts.Store(0)
	}
	return v, err
}

func (s *systemResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookup(s, ctx, name, func(ctx context.Context) ([]string, error) { return s.r.LookupTXT(ctx, name) })
}

func (s *systemResolver) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	return lookup(s, ctx, name, func(ctx context.Context) ([]net.IP, error) { return s.r.LookupIP(ctx, "ip", name) })
}

func (s *systemResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookup(s, ctx, name, func(ctx context.Context) ([]*net.MX, error) { return s.r.LookupMX(ctx, name) })
}
