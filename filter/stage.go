package filter

import (
	"context"
	"io"
	"time"
)

// Action is what a check asks the pipeline to do with the message.
type Action int

const (
	ActionAccept     Action = iota // deliver normally
	ActionTag                      // deliver, but the verdict marks it (e.g. spam score header, later)
	ActionQuarantine               // deliver to the Junk folder (needs storage support; recorded for now)
	ActionTempFail                 // 451 4.7.1: try again later (greylisting, scanner unavailable)
	ActionReject                   // 550 5.7.1: refuse
)

func (a Action) String() string {
	switch a {
	case ActionAccept:
		return "accept"
	case ActionTag:
		return "tag"
	case ActionQuarantine:
		return "quarantine"
	case ActionTempFail:
		return "tempfail"
	case ActionReject:
		return "reject"
	}
	return "unknown"
}

// Verdict is one check's decision about one transaction. Each transaction
// keeps the list of its verdicts (Delivery.Verdicts) for the mail log.
type Verdict struct {
	Stage    string // name of the check, e.g. "spf", "rspamd", "clamav"
	Action   Action
	Score    float64
	Reason   string // shown to the client on reject/tempfail: keep it free of secrets
	Duration time.Duration
	// Headers are complete header fields, each ending in CRLF, that a
	// MessageCheck asks to prepend to the stored message (RFC 8601
	// Authentication-Results, the spam status). They go above the trace
	// fields, as a receiving MTA adds them (RFC 8601 §5).
	Headers []string
	// Rename, when set, renames header fields of the received message: it
	// gets each field's name and unfolded value and returns the new name,
	// or "" to keep it (RFC 8601 §5: forged Authentication-Results).
	Rename func(name, value string) string `json:"-"`
}

// ConnCheck judges the client (IP, HELO, TLS) once per transaction, at Begin.
type ConnCheck interface {
	CheckConn(ctx context.Context, env *Envelope) Verdict
}

// EnvelopeCheck judges a recipient after it was resolved, at AddRcpt.
type EnvelopeCheck interface {
	CheckEnvelope(ctx context.Context, env *Envelope, rcpt string) Verdict
}

// MessageCheck judges the stored message before it is committed. body reads
// the message as stored (trace header included); size is its length.
type MessageCheck interface {
	CheckMessage(ctx context.Context, env *Envelope, rcpts []string, body io.ReaderAt, size int64) Verdict
}

// Checks are the stages of a Pipeline; all lists may be empty.
type Checks struct {
	Conn     []ConnCheck
	Envelope []EnvelopeCheck
	Message  []MessageCheck
	// Dispose, if set, routes each local account's copy after the checks
	// passed; nil delivers every copy to INBOX.
	Dispose Disposer
}

// verdictReject turns a refusing verdict into the client's reply.
func verdictReject(v Verdict) *Reject {
	msg := v.Reason
	if msg == "" {
		msg = "message refused by " + v.Stage
	}
	switch v.Action {
	case ActionReject:
		return reject(550, [3]int{5, 7, 1}, msg, nil)
	case ActionTempFail:
		return reject(451, [3]int{4, 7, 1}, msg, nil)
	}
	return nil
}

// timed runs one check and fills in its duration.
func timed(f func() Verdict) Verdict {
	start := time.Now()
	v := f()
	if v.Duration == 0 {
		v.Duration = time.Since(start)
	}
	return v
}

// priorKey is the context key under which the pipeline passes the verdicts
// recorded so far to a MessageCheck.
type priorKey struct{}

// WithPriorVerdicts returns ctx carrying a copy of vs, as the pipeline
// passes it to each MessageCheck. Tests of later stages use it too.
func WithPriorVerdicts(ctx context.Context, vs []Verdict) context.Context {
	return context.WithValue(ctx, priorKey{}, append([]Verdict(nil), vs...))
}

// PriorVerdicts lists the verdicts the transaction recorded before the
// running MessageCheck: connection, envelope (one per recipient and check)
// and earlier message checks. A stage such as spam scoring adds their
// scores to its own. nil outside the pipeline.
func PriorVerdicts(ctx context.Context) []Verdict {
	vs, _ := ctx.Value(priorKey{}).([]Verdict)
	return vs
}

// Disposition is where one local account's copy of an accepted message
// goes. The zero value (apart from AccountID) is normal delivery to INBOX.
type Disposition struct {
	AccountID uint64
	// Mailbox is the target mailbox name; "" means INBOX. A missing
	// mailbox is created, with SpecialUse if set (RFC 6154, e.g. \Junk).
	Mailbox    string
	SpecialUse string
	// SubjectTag is prepended to the Subject field of this copy (e.g.
	// "[SPAM]"); "" leaves the message as it is.
	SubjectTag string
	// Drop accepts the message for this account but stores nothing (the
	// "delete" spam action); the mail log still records it.
	Drop   bool
	Reason string // why, for the log: "spam score 14.2 >= 5.0: junk"
	// Blob is filled in by the pipeline with the SHA-256 of the stored
	// copy this account got, before Disposer.Delivered is called.
	Blob string
}

// Disposer decides per local account where an accepted message goes (the
// actions of DESIGN §6: deliver, tag, quarantine, delete). Dispose sees
// every verdict of the transaction. Delivered is called once the copies
// are committed, so follow-up records (quarantine) reference stored mail.
type Disposer interface {
	Dispose(ctx context.Context, env *Envelope, verdicts []Verdict, accounts []uint64) []Disposition
	Delivered(ctx context.Context, env *Envelope, ds []Disposition)
}
