package spamstage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/storage"
)

// StageName is the Verdict.Stage of the spam stage.
const StageName = "spam"

// authStage is the Verdict.Stage of filter/auth (SPF, DKIM, DMARC), whose
// quarantine request is DMARC's soft "suspicious".
const authStage = "auth"

// Stage is the pipeline's spam stage: a filter.MessageCheck that scores
// the message and a filter.Disposer that applies each recipient's policy.
type Stage struct{ e *Engine }

// Stage returns the engine's pipeline stage.
func (e *Engine) Stage() *Stage { return &Stage{e: e} }

var (
	_ filter.MessageCheck = (*Stage)(nil)
	_ filter.Disposer     = (*Stage)(nil)
)

// Score is the outcome of scoring one message.
type Score struct {
	Total     float64  `json:"score"`
	Bayes     float64  `json:"bayes_probability"`
	Points    float64  `json:"bayes_points"`
	Threshold float64  `json:"required"`
	Spam      bool     `json:"spam"`
	Tests     []string `json:"tests"`   // SpamAssassin-style names with points
	Reasons   []string `json:"reasons"` // strongest tokens, then prior stages
}

// ScoreMessage classifies a message and adds the scores of the stages that
// ran before (filter.PriorVerdicts in the pipeline, or none).
func (e *Engine) ScoreMessage(ctx context.Context, msg io.Reader, prior []filter.Verdict) (Score, []string, error) {
	r, err := e.Classify(ctx, msg)
	if err != nil {
		return Score{}, nil, err
	}
	sc := Score{Bayes: r.Verdict.Score, Points: r.Points, Total: r.Points,
		Threshold: e.PolicyFor("").Threshold}
	sc.Tests = append(sc.Tests, fmt.Sprintf("%s=%s", bayesRule(r.Verdict.Score), fmtPoints(r.Points)))
	sc.Reasons = append(sc.Reasons, fmt.Sprintf("bayes %.4f: %s points", r.Verdict.Score, fmtPoints(r.Points)))
	for _, tok := range r.Verdict.Reasons {
		sc.Reasons = append(sc.Reasons, "token "+tok)
	}
	// Several verdicts of one stage (one per recipient) count once: the
	// strongest by magnitude, so a per-recipient allowlist is not
	// multiplied by the number of recipients.
	byStage := map[string]float64{}
	why := map[string]string{}
	for _, v := range prior {
		if v.Stage == StageName || v.Score == 0 || math.IsNaN(v.Score) {
			continue
		}
		if cur, ok := byStage[v.Stage]; !ok || math.Abs(v.Score) > math.Abs(cur) {
			byStage[v.Stage], why[v.Stage] = v.Score, v.Reason
		}
	}
	stages := make([]string, 0, len(byStage))
	for s := range byStage {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	for _, s := range stages {
		sc.Total += byStage[s]
		sc.Tests = append(sc.Tests, fmt.Sprintf("%s=%s", testName(s), fmtPoints(byStage[s])))
		r := s + " " + fmtPoints(byStage[s])
		if why[s] != "" {
			r += ": " + why[s]
		}
		sc.Reasons = append(sc.Reasons, r)
	}
	sc.Total = math.Round(sc.Total*10) / 10
	sc.Spam = sc.Total >= sc.Threshold
	return sc, r.Tokens, nil
}

func fmtPoints(p float64) string { return strconv.FormatFloat(p, 'f', 1, 64) }

// testName turns a stage name into a header-safe test name.
func testName(stage string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, stage)
}

// CheckMessage implements filter.MessageCheck. It never refuses mail: the
// recipients' policies act on the score (Dispose). A classifier failure
// gives score 0, logged, rather than losing mail.
func (s *Stage) CheckMessage(ctx context.Context, env *filter.Envelope, _ []string, body io.ReaderAt, size int64) filter.Verdict {
	e := s.e
	sc, toks, err := e.ScoreMessage(ctx, io.NewSectionReader(body, 0, size), filter.PriorVerdicts(ctx))
	if err != nil {
		e.log.Warn("spam classification failed", "msg_id", env.ID, "err", err)
		return filter.Verdict{Stage: StageName, Action: filter.ActionAccept, Reason: "classifier unavailable"}
	}
	v := filter.Verdict{Stage: StageName, Action: filter.ActionAccept, Score: sc.Total,
		Reason: fmt.Sprintf("score %.1f required %.1f bayes %.3f", sc.Total, sc.Threshold, sc.Bayes)}
	if sc.Spam {
		v.Action = filter.ActionTag
	}
	yes := "No"
	if sc.Spam {
		yes = "Yes"
	}
	// Tests are folded one per line so the field stays short (RFC 5322
	// §2.1.1 recommends lines of at most 78 characters).
	v.Headers = []string{
		fmt.Sprintf("X-Spam-Status: %s, score=%.1f required=%.1f\r\n\ttests=%s\r\n", yes, sc.Total, sc.Threshold,
			strings.Join(sc.Tests, ",\r\n\t")),
		fmt.Sprintf("X-Spam-Score: %.1f\r\n", sc.Total),
	}
	if !e.cfg.NoAutoLearn && env.AuthAccountID == 0 {
		// Learn only from confident verdicts of inbound mail; the batch
		// goes out within FlushInterval (Run).
		var class spam.Class
		switch {
		case sc.Total >= e.cfg.AutoSpam:
			class = spam.Spam
		case sc.Total <= e.cfg.AutoHam:
			class = spam.Ham
		}
		if class != spam.None {
			key := TrainKeyReader(io.NewSectionReader(body, 0, size), "")
			if key == "sha:" { // no Message-ID: the bytes as received name it
				h := sha256.New()
				io.Copy(h, io.NewSectionReader(body, 0, size))
				key += hex.EncodeToString(h.Sum(nil))
			}
			e.autoLearn(key, toks, class)
		}
	}
	return v
}

// Dispose implements filter.Disposer: each local account's policy decides
// what its copy of a spam message becomes.
func (s *Stage) Dispose(_ context.Context, env *filter.Envelope, verdicts []filter.Verdict, accounts []uint64) []filter.Disposition {
	if env.AuthAccountID != 0 {
		// Mail between our own authenticated users is never moved or
		// dropped as spam (it still carries the X-Spam headers); a
		// compromised account is the firewall's business.
		return nil
	}
	score, found, held, hold := 0.0, false, "", ""
	for _, v := range verdicts {
		switch {
		case v.Stage == StageName:
			score, found = v.Score, true
		case v.Action == filter.ActionQuarantine && v.Stage == authStage:
			// DMARC p=quarantine (RFC 7489 §6.3): treat as suspicious
			// whatever the spam score; Junk unless the user holds spam.
			held = v.Stage
		case v.Action == filter.ActionQuarantine:
			// Any other stage (the virus scanner) means: hold it, never
			// deliver it, whatever the spam policy says.
			hold = v.Stage + ": " + v.Reason
		}
	}
	if !found && held == "" && hold == "" {
		return nil
	}
	out := make([]filter.Disposition, 0, len(accounts))
	for _, id := range accounts {
		acct, err := s.e.st.AccountByID(id)
		if err != nil {
			out = append(out, filter.Disposition{AccountID: id})
			continue
		}
		p := s.e.PolicyFor(acct.Address)
		d := Decide(id, score, p)
		if hold != "" {
			d = filter.Disposition{AccountID: id, Mailbox: storage.QuarantineMailbox, Reason: hold}
			s.e.log.Info("held", "msg_id", env.ID, "account", acct.Address, "reason", hold)
			out = append(out, d)
			continue
		}
		if held != "" && d.Reason == "" || held != "" && d.Drop {
			// Suspicious but not spam enough: never dropped, held if the
			// policy holds spam, else Junk.
			p.Action = map[bool]string{true: ActionQuarantine, false: ActionJunk}[p.Action == ActionQuarantine]
			d = Decide(id, math.Inf(1), p)
			d.Reason = held + " asked to quarantine: " + p.Action
		}
		if d.SpecialUse == `\Junk` {
			d.Mailbox = s.e.junkMailbox(id)
		}
		if d.Reason != "" {
			s.e.log.Info("spam action", "msg_id", env.ID, "account", acct.Address, "reason", d.Reason)
		}
		out = append(out, d)
	}
	return out
}

// junkMailbox is the account's \Junk mailbox, or "Junk" to be created.
func (e *Engine) junkMailbox(accountID uint64) string {
	boxes, err := e.st.Mailboxes(accountID)
	if err == nil {
		for _, b := range boxes {
			if b.SpecialUse == `\Junk` {
				return b.Name
			}
		}
	}
	return "Junk"
}

// Delivered implements filter.Disposer: held copies get their quarantine
// records.
func (s *Stage) Delivered(ctx context.Context, env *filter.Envelope, ds []filter.Disposition) {
	for _, d := range ds {
		if d.Mailbox != storage.QuarantineMailbox || d.Blob == "" {
			continue
		}
		if err := s.e.hold(ctx, env, d); err != nil {
			s.e.log.Error("quarantine record not written; the message is in the quarantine mailbox", "msg_id", env.ID, "err", err)
		}
	}
}
