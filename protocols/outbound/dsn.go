package outbound

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/tandemmail/tandem/storage"
)

// maxDSNHeader bounds the original header section copied into a DSN.
const maxDSNHeader = 256 << 10

// makeDSN builds and stores the delivery status notification for an
// attempt and returns the queue entry to commit with it.
func (e *Engine) makeDSN(ctx context.Context, qe storage.QueueEntry, failed, delayed []rcptOutcome, attemptNo int, now, expires time.Time) (*storage.QueueEntry, *storage.Blob, error) {
	id := qe.ID + ".delay"
	if len(failed) > 0 {
		id = fmt.Sprintf("%s.dsn%d", qe.ID, attemptNo)
	}
	hdr, err := e.originalHeader(qe.Blob)
	if err != nil {
		return nil, nil, err
	}
	body, err := e.dsnMessage(qe, id, hdr, failed, delayed, now, expires)
	if err != nil {
		return nil, nil, err
	}
	blob, err := e.cfg.Store.PutBlob(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("store DSN: %w", err)
	}
	if err := e.cfg.Store.ReplicateBlob(ctx, blob); err != nil {
		blob.Release()
		return nil, nil, fmt.Errorf("replicate DSN: %w", err)
	}
	d := &storage.QueueEntry{ID: id, Blob: blob.SHA, Size: blob.Size, From: "", DSN: true,
		Rcpts:   []storage.QueueRcpt{{Addr: qe.From, Status: storage.RcptPending}},
		Created: now, NextAttempt: now, Expires: now.Add(e.cfg.Expiry),
		Body8BIT: !isASCII(string(body)), SMTPUTF8: needsUTF8(qe.From, failed, delayed)}
	return d, blob, nil
}

// originalHeader reads the header section of the stored message, with
// CRLF line endings.
func (e *Engine) originalHeader(sha string) ([]byte, error) {
	f, err := e.cfg.Store.OpenBlob(sha)
	if err != nil {
		return nil, fmt.Errorf("read original message: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(io.LimitReader(f, maxDSNHeader))
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break // the blank line, or the end of a message without body
		}
		out.WriteString(line + "\r\n")
		if err != nil {
			break
		}
	}
	return out.Bytes(), nil
}

// dsnMessage renders an RFC 3464 report: multipart/report (RFC 6522)
// with a human part, message/delivery-status and the original header
// section (text/rfc822-headers). Non-ASCII addresses use the RFC 6533
// global types.
func (e *Engine) dsnMessage(qe storage.QueueEntry, id string, origHeader []byte, failed, delayed []rcptOutcome, now, expires time.Time) ([]byte, error) {
	global := needsUTF8(qe.From, failed, delayed)
	var h message.Header
	h.Set("From", "Mail Delivery System <MAILER-DAEMON@"+e.cfg.Hostname+">")
	h.Set("To", "<"+qe.From+">")
	subject := "Undelivered Mail Returned to Sender"
	if len(failed) == 0 {
		subject = "Delayed Mail (still being retried)"
	}
	h.Set("Subject", subject)
	h.Set("Date", now.Format(time.RFC1123Z))
	h.Set("Message-ID", "<"+msgIDPart(id)+"@"+e.cfg.Hostname+">")
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834 §5
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}

	var human strings.Builder
	fmt.Fprintf(&human, "This is the mail system at %s.\r\n\r\n", e.cfg.Hostname)
	if len(failed) > 0 {
		human.WriteString("Your message could not be delivered to these recipients:\r\n\r\n")
		for _, o := range failed {
			fmt.Fprintf(&human, "  <%s>: %s\r\n", o.Addr, oneLine(o.String()))
		}
		human.WriteString("\r\n")
	}
	if len(delayed) > 0 {
		fmt.Fprintf(&human, "Your message has not been delivered yet to these recipients.\r\n"+
			"Delivery will be tried until %s; you need not send it again.\r\n\r\n", expires.Format(time.RFC1123Z))
		for _, o := range delayed {
			fmt.Fprintf(&human, "  <%s>: %s\r\n", o.Addr, oneLine(o.String()))
		}
		human.WriteString("\r\n")
	}
	fmt.Fprintf(&human, "Queue ID: %s\r\n", qe.ID)
	var ph message.Header
	ph.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	ph.Set("Content-Description", "Notification")
	if !isASCII(human.String()) {
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
	}
	if err := writePart(w, ph, human.String()); err != nil {
		return nil, err
	}

	// RFC 3464 §2.2 per-message fields, §2.3 per-recipient fields.
	var st strings.Builder
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", e.cfg.Hostname)
	fmt.Fprintf(&st, "X-Tandem-Queue-ID: %s\r\n", oneLine(qe.ID))
	fmt.Fprintf(&st, "Arrival-Date: %s\r\n", qe.Created.Format(time.RFC1123Z))
	addrType := "rfc822"
	if global {
		addrType = "utf-8" // RFC 6533 §3
	}
	group := func(o rcptOutcome, action string) {
		fmt.Fprintf(&st, "\r\nFinal-Recipient: %s; %s\r\n", addrType, oneLine(o.Addr))
		fmt.Fprintf(&st, "Action: %s\r\n", action)
		fmt.Fprintf(&st, "Status: %d.%d.%d\r\n", o.Enh[0], o.Enh[1], o.Enh[2])
		if o.RemoteMTA != "" {
			fmt.Fprintf(&st, "Remote-MTA: dns; %s\r\n", oneLine(o.RemoteMTA))
			fmt.Fprintf(&st, "Diagnostic-Code: smtp; %s\r\n", oneLine(asciiOnly(fmt.Sprintf("%d %d.%d.%d %s", o.Code, o.Enh[0], o.Enh[1], o.Enh[2], o.Text))))
		} else {
			fmt.Fprintf(&st, "Diagnostic-Code: X-Tandem; %s\r\n", oneLine(asciiOnly(o.Text)))
		}
		fmt.Fprintf(&st, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if action == "delayed" {
			fmt.Fprintf(&st, "Will-Retry-Until: %s\r\n", expires.Format(time.RFC1123Z))
		}
	}
	for _, o := range failed {
		group(o, "failed")
	}
	for _, o := range delayed {
		group(o, "delayed")
	}
	var sh message.Header
	if global {
		sh.SetContentType("message/global-delivery-status", nil)
	} else {
		sh.SetContentType("message/delivery-status", nil)
	}
	if err := writePart(w, sh, st.String()); err != nil {
		return nil, err
	}

	var oh message.Header
	switch {
	case global && !isASCII(string(origHeader)):
		oh.SetContentType("message/global-headers", nil) // RFC 6533 §3.3
	case !isASCII(string(origHeader)):
		oh.SetContentType("text/rfc822-headers", map[string]string{"charset": "utf-8"})
		oh.Set("Content-Transfer-Encoding", "8bit")
	default:
		oh.SetContentType("text/rfc822-headers", nil) // RFC 6522 §4
	}
	oh.Set("Content-Description", "Undelivered Message Headers")
	if err := writePart(w, oh, string(origHeader)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// needsUTF8 reports whether the report names a non-ASCII address, so it is
// an RFC 6533 internationalized report sent with SMTPUTF8.
func needsUTF8(from string, lists ...[]rcptOutcome) bool {
	if !isASCII(from) {
		return true
	}
	for _, l := range lists {
		for _, o := range l {
			if !isASCII(o.Addr) {
				return true
			}
		}
	}
	return false
}

func writePart(w *message.Writer, h message.Header, body string) error {
	pw, err := w.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(pw, body); err != nil {
		return err
	}
	return pw.Close()
}

// oneLine keeps remote text from breaking out of its header field: CR, LF
// and other controls become spaces, and it is cut to a sane length.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return strings.TrimSpace(strings.ToValidUTF8(s, "?"))
}

// asciiOnly replaces non-ASCII bytes: the delivery-status fields of a
// classic report are ASCII (RFC 3464 §2.1.2).
func asciiOnly(s string) string {
	if isASCII(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 0x80 {
			b[i] = '?'
		}
	}
	return string(b)
}

// msgIDPart keeps the characters allowed in a dot-atom (RFC 5322 §3.2.3).
func msgIDPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_+=", r) {
			return r
		}
		return '_'
	}, s)
}
