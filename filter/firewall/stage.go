package firewall

import (
	"context"

	"github.com/tandemmail/tandem/filter"
)

// Stage is the firewall's pipeline part: a ConnCheck at the start of each
// transaction (blocked clients, the message rate) and the observer of
// refused recipients (dictionary attacks).
type Stage struct{ F *Firewall }

var _ filter.ConnCheck = Stage{}

// CheckConn refuses blocked clients and slows down fast senders. The
// rate is per transaction (one MAIL FROM), which is one message.
func (s Stage) CheckConn(ctx context.Context, env *filter.Envelope) filter.Verdict {
	v := filter.Verdict{Stage: "firewall", Action: filter.ActionAccept}
	a := AddrOf(env.ClientIP)
	if b, ok := s.F.IPBlock(a); ok {
		v.Action = filter.ActionReject
		v.Reason = "Client blocked by the mail firewall: " + b.Reason
		return v
	}
	if !s.F.AllowMessage(a) {
		// 451 4.7.1: a rate limit is temporary by nature (RFC 3463 §3.8).
		v.Action = filter.ActionTempFail
		v.Reason = "Too many messages from your address, slow down"
		return v
	}
	return v
}

// ObserveRcptReject is a filter.Config.RcptRejectObserver: each unknown
// recipient (550 5.1.1, RFC 3463 §3.2 "bad destination mailbox address")
// counts toward the dictionary-attack limit of the client.
func (s Stage) ObserveRcptReject(ctx context.Context, env *filter.Envelope, rcpt string, r *filter.Reject) {
	if r == nil || env == nil || r.Code != 550 || r.Enhanced != [3]int{5, 1, 1} {
		return
	}
	s.F.UnknownRecipient(ctx, AddrOf(env.ClientIP))
}
