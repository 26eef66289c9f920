package filter

import (
	"mime"
	"strings"

	"github.com/tandemmail/tandem/storage"
)

// MailLog receives mail log records (SPEC L1); *storage.LogWriter is one.
type MailLog interface {
	Log(storage.LogRecord)
}

func (d *Delivery) record(event string) storage.LogRecord {
	r := storage.LogRecord{Time: d.p.cfg.Now(), QueueID: d.env.ID, Event: event, HELO: d.env.HELO,
		From: d.env.From, Rcpts: append([]string(nil), d.rcpts...)}
	if d.env.ClientIP != nil {
		r.ClientIP = d.env.ClientIP.String()
	}
	if d.env.AuthAccountID != 0 {
		r.Auth = "yes"
		r.Direction = "out"
	} else {
		r.Direction = "in"
	}
	for _, v := range d.verdicts {
		r.Verdicts = append(r.Verdicts, storage.LogVerdict{Stage: v.Stage, Action: v.Action.String(),
			Score: v.Score, Reason: v.Reason, Duration: v.Duration.String()})
	}
	return r
}

// logReject records a refused recipient or message.
func (d *Delivery) logReject(rcpt string, rej *Reject) {
	if d.p.cfg.MailLog == nil || rej == nil {
		return
	}
	r := d.record("rejected")
	if rcpt != "" {
		r.Rcpts = []string{rcpt}
	}
	r.Code, r.Detail, r.Action = rej.Code, rej.Msg, "reject"
	d.p.cfg.MailLog.Log(r)
}

// logAccepted records the accepted message with its subject and
// Message-ID, as the header scan saw them while the message was stored.
func (d *Delivery) logAccepted(hs *headerScan, size int64) {
	if d.p.cfg.MailLog == nil {
		return
	}
	r := d.record("received")
	r.Size = size
	r.Action = "accept"
	subj := string(hs.subject)
	if s, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = s
	}
	r.Subject = truncateRunes(subj, 200)
	r.MessageID = truncateRunes(strings.Trim(string(hs.messageID), "<> "), 200)
	d.p.cfg.MailLog.Log(r)
	if len(d.accounts) > 0 {
		l := d.record("delivered")
		l.Direction, l.Size, l.MessageID, l.Subject = "local", size, r.MessageID, r.Subject
		l.Rcpts = nil
		for _, rc := range d.rcpts {
			if !contains(d.remote, rc) && !contains(d.relay, rc) {
				l.Rcpts = append(l.Rcpts, rc)
			}
		}
		l.Action = "deliver to mailbox"
		d.p.cfg.MailLog.Log(l)
	}
	if len(d.remote) > 0 {
		l := d.record("queued")
		l.Size, l.MessageID, l.Subject, l.Rcpts, l.Action = size, r.MessageID, r.Subject, d.remote, "outbound queue"
		d.p.cfg.MailLog.Log(l)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
