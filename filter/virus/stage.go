package virus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tandemmail/tandem/filter"
)

// UnavailablePolicy is what happens to a message the scanner could not
// judge (clamd down, timeout, error).
type UnavailablePolicy string

const (
	// PolicyTempFail answers 451 4.7.1: the sending server retries later,
	// so nothing unscanned gets in. The default.
	PolicyTempFail UnavailablePolicy = "tempfail"
	// PolicyAccept delivers the message marked "X-Virus-Scanned:
	// unscanned (...)". Only when the admin chose it.
	PolicyAccept UnavailablePolicy = "accept"
)

// InfectedAction is what happens to an infected inbound message.
type InfectedAction string

const (
	ActionReject     InfectedAction = "reject"     // refuse at DATA; the default
	ActionQuarantine InfectedAction = "quarantine" // accept and hold in quarantine
)

// ParsePolicy reads --clamd-policy.
func ParsePolicy(s string) (UnavailablePolicy, error) {
	switch p := UnavailablePolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return PolicyTempFail, nil
	case PolicyTempFail, PolicyAccept:
		return p, nil
	}
	return "", fmt.Errorf("clamd policy %q: want tempfail or accept", s)
}

// ParseAction reads --virus-action.
func ParseAction(s string) (InfectedAction, error) {
	switch a := InfectedAction(strings.ToLower(strings.TrimSpace(s))); a {
	case "":
		return ActionReject, nil
	case ActionReject, ActionQuarantine:
		return a, nil
	}
	return "", fmt.Errorf("virus action %q: want reject or quarantine", s)
}

// Stage is the virus MessageCheck.
type Stage struct {
	Engine      Engine
	Unavailable UnavailablePolicy
	Infected    InfectedAction
	Logger      *slog.Logger
}

var _ filter.MessageCheck = (*Stage)(nil)

// Header field names added to delivered mail.
const (
	headerScanned = "X-Virus-Scanned"
	headerFound   = "X-Virus-Found"
)

// CheckMessage scans the stored message.
func (s *Stage) CheckMessage(ctx context.Context, env *filter.Envelope, rcpts []string, body io.ReaderAt, size int64) filter.Verdict {
	name := s.Engine.Name()
	v := filter.Verdict{Stage: name}
	start := time.Now()
	res, err := s.Engine.Scan(ctx, io.NewSectionReader(body, 0, size), size)
	v.Duration = time.Since(start)
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := ""
	if env != nil {
		id = env.ID
	}
	switch {
	case errors.Is(err, ErrSizeLimit):
		// Retrying cannot make the message smaller, so a tempfail would
		// only delay the bounce by days: the message is refused for good,
		// unless the admin accepts unscanned mail.
		log.Warn("message too large to scan", "msg_id", id, "size", size, "err", err)
		if s.Unavailable == PolicyAccept {
			v.Action = filter.ActionAccept
			v.Reason = "not scanned: message exceeds scanner limit"
			v.Headers = []string{headerScanned + ": unscanned (message exceeds scanner limit)\r\n"}
			return v
		}
		v.Action = filter.ActionReject
		v.Reason = "Message too large for virus scanning"
		return v
	case err != nil:
		log.Error("virus scan failed", "msg_id", id, "engine", name, "err", err)
		if s.Unavailable == PolicyAccept {
			v.Action = filter.ActionAccept
			v.Reason = "not scanned: scanner unavailable"
			v.Headers = []string{headerScanned + ": unscanned (scanner unavailable)\r\n"}
			return v
		}
		v.Action = filter.ActionTempFail
		v.Reason = "Virus scanner temporarily unavailable, try again later"
		return v
	case res.Infected:
		sig := cleanSignature(res.Signature)
		log.Warn("virus found", "msg_id", id, "signature", sig)
		v.Score = 100 // malware is never ham, whatever later stages add up
		// Submitted mail (an authenticated user) is always refused: the
		// sender is ours and learns at once; quarantine is for inbound.
		if s.Infected == ActionQuarantine && (env == nil || env.AuthAccountID == 0) {
			v.Action = filter.ActionQuarantine
			v.Reason = "virus found: " + sig
			v.Headers = []string{
				headerScanned + ": " + name + "\r\n",
				headerFound + ": " + sig + "\r\n",
			}
			return v
		}
		v.Action = filter.ActionReject
		v.Reason = "Message contains a virus: " + sig
		return v
	}
	v.Action = filter.ActionAccept
	v.Reason = "clean"
	v.Headers = []string{headerScanned + ": " + name + "\r\n"}
	return v
}

// cleanSignature keeps a scanner's malware name safe for an SMTP reply and
// a header field: printable ASCII, bounded.
func cleanSignature(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f {
			b.WriteRune(r)
		} else if r == ' ' {
			b.WriteByte(' ')
		}
		if b.Len() >= 128 {
			break
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
