package node

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"
)

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem · {{.NodeID}}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:46rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd}
h1{font-weight:600}code{background:#f3f3f3;padding:0 .3rem}</style></head>
<body><h1>Tandem mail server</h1>
<p>Node <code>{{.NodeID}}</code> ({{.Hostname}}), version {{.Version}}, up {{.Uptime}}.</p>
<p><a href="/cluster">Cluster status</a></p>
<table><tr><th>Raft state</th><td>{{.Raft.State}} (term {{.Raft.Term}}, applied index {{.Raft.AppliedIndex}})</td></tr>
<tr><th>Domains</th><td>{{.Domains}}</td></tr><tr><th>Accounts</th><td>{{.Accounts}}</td></tr>
{{range $k, $v := .Listeners}}<tr><th>{{$k}}</th><td>{{$v}}</td></tr>{{end}}</table>
</body></html>`))

// httpHandler serves the node's HTTP and HTTPS listeners: the health
// check, the public cluster status, the web admin (login, pages, and the
// JSON API behind login) and the handlers other features register.
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := n.raft.Status()
		code := http.StatusOK
		if st.Leader == "" {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"ok": code == http.StatusOK, "state": st.State, "time": time.Now().UTC()})
	})
	n.clusterHandlers(mux)
	n.quarantineHandlers(mux)
	n.signatureHandlers(mux)
	if n.web != nil {
		// The web admin: login, pages, /static/ and the JSON API under
		// /api/ (behind login and CSRF checks; webui/pages.go).
		n.web.Mount(mux)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
			statusPage.Execute(w, n.Status())
		})
	}
	return mux
}
