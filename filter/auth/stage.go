package auth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/textproto"
	"strings"
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

// ForgedResults counts the Authentication-Results fields of a message's
// header whose authserv-id (RFC 8601 §2.2: the first token of the value)
// is hostname: they claim to come from us but arrived with the message.
func ForgedResults(msg io.Reader, hostname string) int {
	if hostname == "" {
		return 0
	}
	tr := textproto.NewReader(bufio.NewReader(io.LimitReader(msg, maxHeaderBytes)))
	h, _ := tr.ReadMIMEHeader()
	n := 0
	for _, v := range h.Values("Authentication-Results") {
		if authservID(v) == strings.ToLower(hostname) {
			n++
		}
	}
	return n
}

// authservID is the authserv-id of an Authentication-Results value (RFC
// 8601 §2.2: its first token), lower-cased.
func authservID(value string) string {
	id, _, _ := strings.Cut(value, ";")
	// Drop a CFWS comment after the id ("mx.example (version 1)").
	id, _, _ = strings.Cut(id, "(")
	if f := strings.Fields(id); len(f) > 0 {
		return strings.ToLower(f[0])
	}
	return ""
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
		"policy", r.DMARC.Applied, "arc", r.ARC.Result, "arc_sealer", r.ARC.Sealer)
	// The field goes on the delivered message (RFC 8601 §5: added by the
	// receiving MTA above the existing fields); the Reason carries the same
	// results into the mail log.
	v.Headers = []string{ar + "\r\n"}
	v.Reason = strings.TrimPrefix(ar, "Authentication-Results: ")
	if n := ForgedResults(io.NewSectionReader(body, 0, size), s.cfg.Hostname); n > 0 {
		// RFC 8601 §5: such fields must be removed or renamed. They are
		// renamed, so the evidence stays readable but no reader takes it
		// for our verdict; the mail log says so.
		s.cfg.Logger.WarnContext(ctx, "message carries Authentication-Results claiming our authserv-id",
			"id", env.ID, "count", n)
		v.Reason += fmt.Sprintf(" (%d forged Authentication-Results of %s renamed)", n, s.cfg.Hostname)
		host := s.cfg.Hostname
		v.Rename = func(name, value string) string {
			if strings.EqualFold(name, "Authentication-Results") && authservID(value) == strings.ToLower(host) {
				return "X-Forged-Authentication-Results"
			}
			return ""
		}
	}
	v.Score = r.Score()
	switch {
	case s.cfg.Enforce && r.Reject():
		v.Action = filter.ActionReject
		// RFC 7489 §10.3: 550 5.7.1 naming the DMARC failure.
		v.Reason = "rejected by the DMARC policy of the From domain"
		v.Headers = nil
	case s.cfg.Enforce && r.Quarantine():
		v.Action = filter.ActionQuarantine
	case r.DMARC.Result == DMARCFail:
		v.Action = filter.ActionTag
	}
	return v
}
