package filter

import (
	"context"
	"fmt"

	"github.com/tandemmail/tandem/storage"
)

// Gateway relays the mail of gateway domains (SPEC M9): such a domain is
// hosted here so that MX mail for it is accepted without AUTH, its mail
// passes every check like any other, and then it is queued for the
// domain's backend hosts instead of being stored in a mailbox.
type Gateway interface {
	// GatewayRecipient decides on one recipient. handled is false when
	// addr's domain is not a gateway domain (normal routing applies).
	// Otherwise nil accepts the recipient and a *Reject refuses it
	// (550 5.1.1 unknown at the backend, 451 4.4.3 when no backend could
	// be asked); any other error is answered 451.
	GatewayRecipient(ctx context.Context, env *Envelope, addr string) (handled bool, err error)
	// Relay queues the message for the accepted gateway recipients; nil
	// only once the entry is committed (its blob on a quorum).
	Relay(ctx context.Context, env *Envelope, rcpts []string, blob *storage.Blob) error
}

// addRelay accepts a recipient of a gateway domain after the same
// envelope checks local mail gets; addr is as given, norm its parsed form.
func (d *Delivery) addRelay(ctx context.Context, addr, norm string) error {
	if d.p.cfg.Store.SpaceLow(d.env.Size) {
		return reject(452, [3]int{4, 3, 1}, "Insufficient system storage", nil) // RELIABILITY #5
	}
	for _, c := range d.p.cfg.Checks.Envelope {
		v := timed(func() Verdict { return c.CheckEnvelope(ctx, d.env, norm) })
		d.verdicts = append(d.verdicts, v)
		if r := verdictReject(v); r != nil {
			return r
		}
	}
	d.relay = append(d.relay, norm)
	d.rcpts = append(d.rcpts, addr)
	return nil
}

// gatewayRecipient is addRcpt's gateway step: handled reports that the
// recipient belonged to a gateway domain and err is the decision.
func (d *Delivery) gatewayRecipient(ctx context.Context, addr, norm string) (handled bool, err error) {
	g := d.p.cfg.Gateway
	if g == nil {
		return false, nil
	}
	handled, err = g.GatewayRecipient(ctx, d.env, norm)
	if !handled {
		return false, nil
	}
	if err != nil {
		if _, ok := AsReject(err); ok {
			return true, err
		}
		return true, reject(451, [3]int{4, 4, 3}, "Recipient cannot be verified now, try again later", err)
	}
	return true, d.addRelay(ctx, addr, norm)
}

// relayGateway queues the message for the gateway recipients and logs it.
// When the same transaction also has ordinary remote recipients, those
// keep the message's ID and the gateway entry gets "-gw" appended: a queue
// ID names one entry.
func (d *Delivery) relayGateway(ctx context.Context, blob *storage.Blob) error {
	env := d.env
	if len(d.remote) > 0 {
		c := *d.env
		c.ID += "-gw"
		env = &c
	}
	if err := d.p.cfg.Gateway.Relay(ctx, env, d.relay, blob); err != nil {
		if _, ok := AsReject(err); ok {
			return err
		}
		return storageReject(fmt.Errorf("queue %s for the gateway: %w", env.ID, err))
	}
	if d.p.cfg.MailLog != nil {
		l := d.record("queued")
		l.QueueID, l.Size, l.Rcpts, l.Action = env.ID, blob.Size, d.relay, "gateway relay"
		d.p.cfg.MailLog.Log(l)
	}
	return nil
}
