package spamstage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// Spam actions (SPEC F2).
const (
	ActionJunk       = "junk"       // deliver to the Junk mailbox (\Junk, RFC 6154)
	ActionInbox      = "inbox"      // deliver to INBOX (tagged)
	ActionDelete     = "delete"     // accept and drop, logged
	ActionQuarantine = "quarantine" // hold; the user releases from the digest
)

// DefaultThreshold is the spam score at or above which a message is spam,
// as in SpamAssassin.
const DefaultThreshold = 5.0

// Policy is what happens to spam for a scope. Fields left empty in a
// domain or user policy are inherited from the wider scope.
type Policy struct {
	Threshold *float64 `json:"threshold,omitempty"`
	Action    string   `json:"action,omitempty"`
	// Tag is put in front of the subject of spam delivered to Junk or
	// INBOX; "-" means no tag (an explicit empty value).
	Tag *string `json:"tag,omitempty"`
}

// Effective is a fully resolved policy.
type Effective struct {
	Threshold float64 `json:"threshold"`
	Action    string  `json:"action"`
	Tag       string  `json:"tag"`
	From      string  `json:"from"` // the most specific scope that set something
}

// DefaultPolicy is used when nothing is configured.
func DefaultPolicy() Effective {
	return Effective{Threshold: DefaultThreshold, Action: ActionJunk, Tag: "[SPAM]", From: "default"}
}

// Check refuses a policy with a bad field.
func (p Policy) Check() error {
	if p.Threshold != nil && (math.IsNaN(*p.Threshold) || math.IsInf(*p.Threshold, 0) || *p.Threshold < -1000 || *p.Threshold > 1000) {
		return fmt.Errorf("threshold %v: must be a number between -1000 and 1000", *p.Threshold)
	}
	switch p.Action {
	case "", ActionJunk, ActionInbox, ActionDelete, ActionQuarantine:
	default:
		return fmt.Errorf("action %q: want junk, inbox, delete or quarantine", p.Action)
	}
	if p.Tag != nil && (len(*p.Tag) > 64 || strings.ContainsAny(*p.Tag, "\r\n\x00")) {
		return errors.New("tag: at most 64 characters on one line")
	}
	return nil
}

// PolicyKey checks and normalizes a scope: "global", "d:DOMAIN" or
// "u:ADDRESS" (also accepted: a bare domain or address).
func PolicyKey(scope string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(scope))
	switch {
	case s == "global" || s == "":
		return "global", nil
	case strings.HasPrefix(s, "d:"), strings.HasPrefix(s, "u:"):
	case strings.Contains(s, "@"):
		s = "u:" + s
	default:
		s = "d:" + s
	}
	v := s[2:]
	if v == "" || len(v) > 254 || strings.ContainsAny(v, " \t\r\n\x00/") {
		return "", fmt.Errorf("scope %q: want global, d:DOMAIN or u:ADDRESS", scope)
	}
	if s[0] == 'u' && strings.Count(v, "@") != 1 {
		return "", fmt.Errorf("scope %q: u: needs one address", scope)
	}
	if s[0] == 'd' && strings.Contains(v, "@") {
		return "", fmt.Errorf("scope %q: d: needs a domain", scope)
	}
	return s, nil
}

// Policy reads the policy stored for a scope key (zero when unset).
func (e *Engine) Policy(key string) (Policy, bool, error) {
	v, _, ok, err := e.st.KVGet(NSPolicy, key)
	if err != nil || !ok {
		return Policy{}, false, err
	}
	var p Policy
	if err := json.Unmarshal(v, &p); err != nil {
		return Policy{}, false, fmt.Errorf("policy %s: %w", key, err)
	}
	return p, true, nil
}

// SetPolicy stores (or with a zero Policy, removes) a scope's policy.
func (e *Engine) SetPolicy(ctx context.Context, key string, p Policy) error {
	if err := p.Check(); err != nil {
		return err
	}
	if p == (Policy{}) {
		return e.st.KVDeleteKey(ctx, NSPolicy, key)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return e.st.KVPutValue(ctx, NSPolicy, key, b)
}

// PolicyFor resolves the policy of an address: user over domain over
// global over the defaults, field by field.
func (e *Engine) PolicyFor(address string) Effective {
	eff := DefaultPolicy()
	address = strings.ToLower(address)
	_, domain, _ := strings.Cut(address, "@")
	for _, key := range []string{"global", "d:" + domain, "u:" + address} {
		p, ok, err := e.Policy(key)
		if err != nil {
			e.log.Warn("spam policy unreadable; ignored", "scope", key, "err", err)
			continue
		}
		if !ok {
			continue
		}
		eff.apply(p, key)
	}
	return eff
}

func (eff *Effective) apply(p Policy, from string) {
	if p.Threshold != nil {
		eff.Threshold = *p.Threshold
	}
	if p.Action != "" {
		eff.Action = p.Action
	}
	if p.Tag != nil {
		eff.Tag = *p.Tag
		if eff.Tag == "-" {
			eff.Tag = ""
		}
	}
	eff.From = from
}

// Decide turns a total score and a policy into one account's disposition.
func Decide(accountID uint64, score float64, p Effective) filter.Disposition {
	d := filter.Disposition{AccountID: accountID}
	if score < p.Threshold {
		return d
	}
	d.Reason = fmt.Sprintf("spam score %.1f >= %.1f (%s policy): %s", score, p.Threshold, p.From, p.Action)
	switch p.Action {
	case ActionInbox:
		d.SubjectTag = p.Tag
	case ActionDelete:
		d.Drop = true
	case ActionQuarantine:
		d.Mailbox = storage.QuarantineMailbox
	default:
		d.Mailbox, d.SpecialUse, d.SubjectTag = "Junk", `\Junk`, p.Tag
	}
	return d
}

// ScopePolicy is one stored policy.
type ScopePolicy struct {
	Scope  string `json:"scope"`
	Policy Policy `json:"policy"`
}

// Policies lists every stored policy.
func (e *Engine) Policies() ([]ScopePolicy, error) {
	out := []ScopePolicy{}
	err := e.st.KVList(NSPolicy, "", func(key string, v []byte, _ uint64) error {
		var p Policy
		if json.Unmarshal(v, &p) == nil {
			out = append(out, ScopePolicy{Scope: key, Policy: p})
		}
		return nil
	})
	return out, err
}

// EffectiveFor resolves a scope key: for "u:ADDRESS" the user's policy,
// for "d:DOMAIN" what a user of the domain without own policy gets.
func (e *Engine) EffectiveFor(key string) Effective {
	switch {
	case strings.HasPrefix(key, "u:"):
		return e.PolicyFor(key[2:])
	case strings.HasPrefix(key, "d:"):
		return e.PolicyFor("@" + key[2:])
	}
	return e.PolicyFor("")
}
