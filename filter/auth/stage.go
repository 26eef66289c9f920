package auth

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tandemmail/tandem/filter"
)

// StageConfig configures the pipeline stage.
type StageConfig struct {
	Resolver Resolver      // required
	Hostname string        // authserv-id of Authentication-Results, e.g. "mx.example.net"
	Timeout  time.Duration // bound on all DNS work per message; zero means 20 s
	Enforce  bool          // act on DMARC: reject (p=reject) and quarantine; false only tags
	Logger   *slog.Logger  // nil: slog.Default()
}

// Stage is a filter.MessageCheck running SPF, DKIM and DMARC on mail from
// unauthenticated clients. Its verdict's Reason is the
// Authentication-Results field (without CRLF) when the message is accepted.
type Stage struct {
	cfg StageConfig
}

var _ filter.MessageCheck = (*Stage)(nil)

// NewStage returns the stage.
func NewStage(cfg StageConfig) *Stage {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Stage{cfg: cfg}
}

// CheckMessage implements filter.MessageCheck.
func (s *Stage) CheckMessage(ctx context.Context, env *filter.Envelope, rcpts []string, body io.ReaderAt, size int64) filter.Verdict {
	v := filter.Verdict{Stage: "auth", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		v.Reason = "authenticated submission"
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r := CheckReader(ctx, s.cfg.Resolver, env.ClientIP, env.HELO, env.From, body, size)
	ar := r.AuthenticationResults(s.cfg.Hostname)
	s.cfg.Logger.InfoContext(ctx, "sender authentication", "id", env.ID, "client", env.ClientIP.String(),
		"spf", r.SPF.Result, "dkim", len(r.DKIM), "dmarc", r.DMARC.Result, "from_domain", r.DMARC.FromDomain,
		"policy", r.DMARC.Applied)
	switch {
	case !s.cfg.Enforce:
		v.Reason = ar
		if r.DMARC.Result == DMARCFail {
			v.Action = filter.ActionTag
		}
	case r.Reject():
		v.Action = filter.ActionReject
		// RFC 7489 §10.3: 550 5.7.1 naming the DMARC failure.
		v.Reason = "rejected by the DMARC policy of the From domain"
	case r.Quarantine():
		v.Action = filter.ActionQuarantine
		v.Reason = ar
	default:
		v.Reason = ar
		if r.DMARC.Result == DMARCFail {
			v.Action = filter.ActionTag
		}
	}
	return v
}
