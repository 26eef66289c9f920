package lists

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
	"github.com/tandemmail/tandem/filter"
)

// Rule fields, operators and actions.
const (
	FieldFrom    = "from"    // the From header field (decoded)
	FieldTo      = "to"      // To and Cc
	FieldSubject = "subject" // decoded Subject
	FieldHeader  = "header"  // the field named by Rule.Header

	OpContains = "contains" // case-insensitive substring
	OpEquals   = "equals"   // case-insensitive, whole value
	OpRegex    = "regex"    // RE2 (add (?i) for case-insensitive)

	ActionAllow = "allow"
	ActionBlock = "block"
	ActionScore = "score"
)

// Limits keep a rule cheap to evaluate on every message.
const (
	MaxRuleValue    = 512
	MaxRulesPerUser = 200
	maxHeaderBytes  = 256 << 10
	// BlockScore is what a block rule adds when other recipients of the
	// same message did not block it.
	BlockScore = 100.0
)

// Rule is one personal rule of a user.
type Rule struct {
	ID     string  `json:"id"`
	Field  string  `json:"field"`
	Header string  `json:"header,omitempty"`
	Op     string  `json:"op"`
	Value  string  `json:"value"`
	Action string  `json:"action"`
	Score  float64 `json:"score,omitempty"` // for action score: points, ±

	re *regexp.Regexp
}

// Normalize checks r (compiling its regular expression) and gives it an
// ID when it has none.
func (r *Rule) Normalize() error {
	r.Field = strings.ToLower(strings.TrimSpace(r.Field))
	r.Op = strings.ToLower(strings.TrimSpace(r.Op))
	r.Action = strings.ToLower(strings.TrimSpace(r.Action))
	switch r.Field {
	case FieldFrom, FieldTo, FieldSubject:
		r.Header = ""
	case FieldHeader:
		if r.Header == "" || len(r.Header) > 76 || strings.ContainsAny(r.Header, ": \t\r\n") {
			return fmt.Errorf("rule: field header needs a header name (e.g. List-Id)")
		}
		r.Header = textproto.CanonicalMIMEHeaderKey(r.Header)
	default:
		return fmt.Errorf("rule field %q: must be from, to, subject or header", r.Field)
	}
	if r.Value == "" || len(r.Value) > MaxRuleValue {
		return fmt.Errorf("rule value: 1-%d bytes", MaxRuleValue)
	}
	switch r.Op {
	case OpContains, OpEquals:
	case OpRegex:
		re, err := regexp.Compile(r.Value)
		if err != nil {
			return fmt.Errorf("rule regex %q: %w", r.Value, err)
		}
		r.re = re
	default:
		return fmt.Errorf("rule operator %q: must be contains, equals or regex", r.Op)
	}
	switch r.Action {
	case ActionAllow, ActionBlock:
		r.Score = 0
	case ActionScore:
		if r.Score == 0 || r.Score < -1000 || r.Score > 1000 {
			return fmt.Errorf("rule score %g: must be non-zero, between -1000 and 1000", r.Score)
		}
	default:
		return fmt.Errorf("rule action %q: must be allow, block or score", r.Action)
	}
	if r.ID == "" {
		var b [4]byte
		rand.Read(b[:])
		r.ID = hex.EncodeToString(b[:])
	}
	return nil
}

// ParseRules decodes and checks one user's stored rules.
func ParseRules(raw []byte) ([]Rule, error) {
	var rs []Rule
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &rs); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if len(rs) > MaxRulesPerUser {
		return nil, fmt.Errorf("rules: %d, at most %d per user", len(rs), MaxRulesPerUser)
	}
	for i := range rs {
		if err := rs[i].Normalize(); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

func (r *Rule) matches(h textproto.MIMEHeader) bool {
	var values []string
	switch r.Field {
	case FieldFrom:
		values = h.Values("From")
	case FieldTo:
		values = append(h.Values("To"), h.Values("Cc")...)
	case FieldSubject:
		values = h.Values("Subject")
	case FieldHeader:
		values = h.Values(r.Header)
	}
	for _, v := range values {
		v = decodeWords(v)
		switch r.Op {
		case OpContains:
			if strings.Contains(strings.ToLower(v), strings.ToLower(r.Value)) {
				return true
			}
		case OpEquals:
			if strings.EqualFold(strings.TrimSpace(v), r.Value) {
				return true
			}
		case OpRegex:
			if r.re.MatchString(v) {
				return true
			}
		}
	}
	return false
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeWords decodes RFC 2047 encoded words; undecodable text stays as is.
func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// ReadHeader reads the header section of a message, at most 256 KiB of it
// (a larger header is cut: rules see the fields before the limit).
func ReadHeader(r io.Reader) textproto.MIMEHeader {
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(r, maxHeaderBytes)))
	h, _ := tp.ReadMIMEHeader() // on error h holds the fields read so far
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	return h
}

// Rules is the personal-rules stage, a filter.MessageCheck.
//
// A message has one verdict, but each recipient has their own rules. Until
// per-recipient delivery actions exist, the verdict is: reject when every
// local recipient that has rules blocks it; otherwise the most lenient
// recipient's outcome (allow → AllowScore, else the lowest score, a block
// counting as BlockScore).
type Rules struct {
	store Store
	log   *slog.Logger
	rules nsCache[[]Rule]
}

var _ filter.MessageCheck = (*Rules)(nil)

// NewRules returns the personal-rules stage.
func NewRules(store Store, log *slog.Logger) *Rules {
	if log == nil {
		log = slog.Default()
	}
	return &Rules{store: store, log: log, rules: nsCache[[]Rule]{store: store, ns: RulesNamespace, log: log, parse: ParseRules}}
}

// Evaluate applies one user's rules to a header: the first allow or block
// rule that matches decides; score rules that match before it add up.
func Evaluate(rules []Rule, h textproto.MIMEHeader) (action string, score float64, matched []string) {
	for i := range rules {
		r := &rules[i]
		if !r.matches(h) {
			continue
		}
		matched = append(matched, r.ID)
		switch r.Action {
		case ActionScore:
			score += r.Score
		default:
			return r.Action, score, matched
		}
	}
	return "", score, matched
}

// CheckMessage implements filter.MessageCheck.
func (s *Rules) CheckMessage(ctx context.Context, env *filter.Envelope, rcpts []string, body io.ReaderAt, size int64) filter.Verdict {
	v := filter.Verdict{Stage: "rules", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		return v
	}
	all := s.rules.get()
	if len(all) == 0 {
		return v
	}
	seen := map[string]bool{}
	var h textproto.MIMEHeader
	blocks, judged := 0, 0
	best := 0.0
	var reasons []string
	for _, rcpt := range rcpts {
		for _, acct := range accounts(s.store, rcpt) {
			if seen[acct] {
				continue
			}
			seen[acct] = true
			rules, ok := all[UserScope(acct)]
			if !ok || len(rules) == 0 {
				continue
			}
			if h == nil {
				h = ReadHeader(io.NewSectionReader(body, 0, size))
			}
			action, score, matched := Evaluate(rules, h)
			judged++
			switch action {
			case ActionAllow:
				score = AllowScore
			case ActionBlock:
				blocks++
				score = BlockScore
			}
			if len(matched) > 0 {
				reasons = append(reasons, fmt.Sprintf("%s's rules %s", acct, strings.Join(matched, ",")))
			}
			if judged == 1 || score < best {
				best = score
			}
		}
	}
	if judged > 0 && blocks == judged {
		v.Action = filter.ActionReject
		v.Reason = "Message refused by the recipient's personal rules"
		s.log.InfoContext(ctx, "rules: blocked", "msg_id", env.ID, "detail", strings.Join(reasons, "; "))
		return v
	}
	v.Score = best
	v.Reason = strings.Join(reasons, "; ")
	return v
}
