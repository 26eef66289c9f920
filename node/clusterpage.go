package node

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

var clusterPage = template.Must(template.New("cluster").Funcs(template.FuncMap{
	"ms":    func(d time.Duration) int64 { return d.Milliseconds() },
	"bytes": humanBytes,
	"ts":    func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Tandem cluster · {{.Node}}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}td,th{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd}
th{font-weight:600;background:#f6f6f6}.ok{color:#17733a}.bad{color:#b3261e;font-weight:600}code{background:#f3f3f3;padding:0 .3rem}</style></head>
<body><h1>Cluster status</h1>
<p>Seen from <code>{{.Node}}</code> at {{ts .Time}}. Leader: <strong>{{if .Leader}}{{.Leader}}{{else}}<span class="bad">none</span>{{end}}</strong>, term {{.Term}}, quorum {{.Quorum}} of {{len .Members}}.
{{if .VIP}}Virtual IP <code>{{.VIP}}</code> held by <strong>{{if .VIPHeld}}{{.VIPHeld}}{{else}}<span class="bad">nobody</span>{{end}}</strong>.{{end}}</p>
<table><thead><tr><th>Node</th><th>Address</th><th>Role</th><th>Health</th><th>Gossip</th><th>Applied</th><th>Lag</th><th>Disk free</th><th>VIP</th></tr></thead><tbody>
{{range .Members}}<tr><td>{{.ID}}{{if .Self}} (this node){{end}}{{if .Witness}} (witness){{end}}</td><td>{{.Addr}}</td><td>{{.Role}}</td>
<td class="{{if eq .Health "ok"}}ok{{else}}bad{{end}}">{{.Health}}</td><td>{{.Gossip}}</td><td>{{.AppliedIndex}}</td><td>{{.Lag}}</td>
<td>{{if .DiskFree}}{{bytes .DiskFree}}{{end}}</td><td>{{if .HoldsVIP}}holds it{{end}}</td></tr>
{{end}}</tbody></table>
<h2>Recent elections and failovers</h2>
{{if .Events}}<table><thead><tr><th>Time</th><th>Event</th><th>Term</th><th>Leader</th><th>Without a leader for</th></tr></thead><tbody>
{{range .Events}}<tr><td>{{ts .Time}}</td><td>{{.Kind}}</td><td>{{.Term}}</td><td>{{.Leader}}</td><td>{{if .Downtime}}{{ms .Downtime}} ms{{end}}</td></tr>
{{end}}</tbody></table>{{else}}<p>None since this node started.</p>{{end}}
<p><a href="/api/cluster">JSON</a></p></body></html>`))

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// clusterHandlers serve the cluster status page and its JSON (SPEC W4) on
// every node, always answered locally.
func (n *Node) clusterHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		if n.raft.Mux() == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"this node runs without --cluster-addr: it is a cluster of one"}` + "\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.ClusterStatus(r.Context()))
	})
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, r *http.Request) {
		if n.web != nil { // the page in the web admin's layout (webui/pages.go)
			n.web.ServeClusterPage(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		if n.raft.Mux() == nil {
			w.Write([]byte("<!doctype html><p>This node runs alone (no --cluster-addr): a cluster of one.</p>"))
			return
		}
		clusterPage.Execute(w, n.ClusterStatus(r.Context()))
	})
}
