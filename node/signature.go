package node

import (
	"bytes"
	"errors"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/filter/dkimsign"
)

// The secure-signature page (SPEC S2). The token in the path is the only
// capability: no cookies and no session, so there is nothing for a
// cross-site request to ride on, and the POST only tells whether a pasted
// message matches, which anyone holding the token may learn. Unknown,
// malformed and expired tokens get the same 404 page.
var signaturePage = template.Must(template.New("verify").Funcs(template.FuncMap{
	"ts": func(u int64) string { return time.Unix(u, 0).UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Message verification</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:46rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
code{background:#f3f3f3;padding:0 .3rem;word-break:break-all}textarea{width:100%;height:12rem;font:13px monospace}
.ok{color:#075;font-weight:600}.bad{color:#b00;font-weight:600}</style></head>
<body>{{if .NotFound}}<h1>Not found</h1><p>This verification link is unknown or has expired.</p>{{else}}
<h1>Message verification</h1>
<p>This server sent a message with this link. These are its details as sent:</p>
<table><tr><th>Sender</th><td>{{.Rec.Sender}}</td></tr>
<tr><th>Recipients</th><td>{{range $i, $r := .Rec.Recipients}}{{if $i}}, {{end}}{{$r}}{{end}}</td></tr>
<tr><th>Sent</th><td>{{ts .Rec.Time}}</td></tr>
<tr><th>Subject</th><td>{{.Rec.Subject}}</td></tr>
<tr><th>Body SHA-256</th><td><code>{{.Rec.BodySHA256}}</code></td></tr>
<tr><th>Link valid until</th><td>{{ts .Rec.Expires}}</td></tr></table>
{{if .Checked}}{{if .Match}}<p id="result" class="ok">The message you gave matches: its body is exactly what was sent.</p>
{{else}}<p id="result" class="bad">The message you gave does NOT match what was sent: it was altered or is not this message.</p>{{end}}{{end}}
<h2>Check a message you received</h2>
<form method="post" enctype="multipart/form-data">
<p>Paste the whole message (its source, with headers) or only its text:</p>
<p><textarea name="message"></textarea></p>
<p>or upload it as a file (.eml): <input type="file" name="file"></p>
<p><button type="submit">Check</button></p></form>{{end}}
</body></html>`))

type signatureView struct {
	NotFound, Checked, Match bool
	Rec                      dkimsign.SignatureRecord
}

// signatureHandlers serves GET and POST /v/{token} on the public HTTP listener.
func (n *Node) signatureHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /v/{token}", n.serveSignature)
	mux.HandleFunc("POST /v/{token}", n.serveSignature)
}

func (n *Node) serveSignature(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer") // the token is in the URL
	h.Set("Cache-Control", "no-store")
	rec, ok := dkimsign.GetRecord(n.store, r.PathValue("token"), time.Now())
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		signaturePage.Execute(w, signatureView{NotFound: true})
		return
	}
	v := signatureView{Rec: rec}
	if r.Method == http.MethodPost {
		msg, err := n.submittedMessage(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v.Checked, v.Match = true, dkimsign.MatchMessage(rec, msg)
	}
	signaturePage.Execute(w, v)
}

// submittedMessage reads the pasted text or the uploaded file of the form
// (multipart or urlencoded), bounded by the largest message accepted.
func (n *Node) submittedMessage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := n.cfg.MaxMessageBytes
	if limit <= 0 {
		limit = 50 << 20
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+1<<20)
	if err := r.ParseMultipartForm(8 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return nil, errors.New("could not read the form: " + err.Error())
	}
	if r.MultipartForm == nil {
		if err := r.ParseForm(); err != nil {
			return nil, errors.New("could not read the form: " + err.Error())
		}
	} else {
		defer r.MultipartForm.RemoveAll()
	}
	if f, _, err := r.FormFile("file"); err == nil {
		defer f.Close()
		var b bytes.Buffer
		if _, err := io.Copy(&b, f); err != nil {
			return nil, errors.New("could not read the uploaded file")
		}
		if b.Len() > 0 {
			return b.Bytes(), nil
		}
	}
	msg := r.PostFormValue("message")
	if msg == "" {
		return nil, errors.New("paste the message or upload it as a file")
	}
	return []byte(msg), nil
}
