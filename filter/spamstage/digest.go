package spamstage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"strings"
	"time"
)

// DigestDue reports whether a digest round is due: none was sent within
// interval (the time is replicated, so a new leader does not resend).
func (e *Engine) DigestDue(interval time.Duration) bool {
	last := e.st.KVCounter(NSQuarantineState, "last")
	return e.cfg.Now().Unix()-last >= int64(interval/time.Second)
}

// SendDigests delivers to each account with held mail one message listing
// it, each with a signed release link under base, and records the round.
// It returns how many digests went out.
func (e *Engine) SendDigests(ctx context.Context, base, hostname string) (int, error) {
	recs, err := e.Quarantined(0)
	if err != nil {
		return 0, err
	}
	by := map[uint64][]QuarantineRecord{}
	var order []uint64
	for _, r := range recs {
		if by[r.AccountID] == nil {
			order = append(order, r.AccountID)
		}
		by[r.AccountID] = append(by[r.AccountID], r)
	}
	sent := 0
	var errs []error
	for _, id := range order {
		msg, err := e.digestMessage(ctx, base, hostname, by[id])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b, err := e.st.PutBlob(strings.NewReader(msg))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = e.st.Deliver(ctx, b, []uint64{id}, e.cfg.Now())
		b.Release()
		if err != nil {
			errs = append(errs, fmt.Errorf("digest for account %d: %w", id, err))
			continue
		}
		sent++
	}
	var now [8]byte
	binary.BigEndian.PutUint64(now[:], uint64(e.cfg.Now().Unix())) // read back with KVCounter
	if err := e.st.KVPutValue(ctx, NSQuarantineState, "last", now[:]); err != nil {
		errs = append(errs, err)
	}
	return sent, errors.Join(errs...)
}

func (e *Engine) digestMessage(ctx context.Context, base, hostname string, recs []QuarantineRecord) (string, error) {
	var body strings.Builder
	fmt.Fprintf(&body, "%d message(s) addressed to you are held as spam.\r\n", len(recs))
	body.WriteString("Open a link to release a message to your INBOX.\r\n\r\n")
	for _, r := range recs {
		link, err := e.ReleaseURL(ctx, base, r.ID)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&body, "From:    %s\r\nSubject: %s\r\nHeld:    %s (score %.1f)\r\nRelease: %s\r\n\r\n",
			oneLine(r.From), oneLine(r.Subject), time.Unix(r.Held, 0).UTC().Format(time.RFC1123Z), r.Score, link)
	}
	now := e.cfg.Now()
	var m strings.Builder
	fmt.Fprintf(&m, "From: Mail Quarantine <postmaster@%s>\r\n", hostname)
	fmt.Fprintf(&m, "To: %s\r\n", recs[0].Address)
	fmt.Fprintf(&m, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", fmt.Sprintf("Quarantine digest: %d held message(s)", len(recs))))
	fmt.Fprintf(&m, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&m, "Message-ID: <digest.%d.%d@%s>\r\n", recs[0].AccountID, now.UnixNano(), hostname)
	m.WriteString("Auto-Submitted: auto-generated\r\n") // RFC 3834 §5
	m.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	m.WriteString(body.String())
	return m.String(), nil
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

var releasePage = template.Must(template.New("release").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Release held message</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:40rem;padding:0 1rem}</style></head>
<body><h1>{{.Title}}</h1>{{with .Rec}}<p>From: {{.From}}<br>Subject: {{.Subject}}</p>{{end}}
{{if .Form}}<form method="post"><input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="sig" value="{{.Sig}}">
<button type="submit">Release to my INBOX</button></form>{{end}}<p>{{.Text}}</p></body></html>`))

// ReleaseHandler serves the digest's release links: GET shows the message
// and a button, POST releases it. GET never changes anything, because mail
// scanners and previews follow links.
func (e *Engine) ReleaseHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		id, sig := r.FormValue("id"), r.FormValue("sig")
		page := struct {
			Title, Text, ID, Sig string
			Rec                  *QuarantineRecord
			Form                 bool
		}{ID: id, Sig: sig}
		show := func(code int) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(code)
			releasePage.Execute(w, page)
		}
		if id == "" || sig == "" || len(id) > 200 || !e.Verify(r.Context(), id, sig) {
			page.Title, page.Text = "Invalid link", "This release link is not valid."
			show(http.StatusForbidden)
			return
		}
		rec, err := e.QuarantineGet(id)
		if err != nil {
			page.Title, page.Text = "Not held", "This message is no longer held (already released or deleted)."
			show(http.StatusNotFound)
			return
		}
		page.Rec = &rec
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			page.Title, page.Form = "Release held message?", true
			show(http.StatusOK)
		case http.MethodPost:
			if _, err := e.Release(r.Context(), id); err != nil {
				e.log.Warn("release failed", "id", id, "err", err)
				page.Title, page.Text = "Not released", "The message could not be released; try again later."
				show(http.StatusServiceUnavailable)
				return
			}
			page.Title, page.Text = "Released", "The message was moved to your INBOX."
			show(http.StatusOK)
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}
