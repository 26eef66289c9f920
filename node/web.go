package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/webui"
)

// startWeb builds the web admin (webui.Web) on top of the admin API; the
// HTTP and HTTPS listeners mount it (node/http.go).
func (n *Node) startWeb(api *webui.API) error {
	cfg := webui.WebConfig{API: api, Store: n.store, Logger: n.log, Version: Version,
		Status: func() any { return n.Status() }}
	if n.raft.Mux() != nil {
		cfg.Cluster = func(ctx context.Context) any { return n.ClusterStatus(ctx) }
	}
	w, err := webui.NewWeb(cfg)
	if err != nil {
		return fmt.Errorf("web admin: %w", err)
	}
	n.web = w
	return nil
}

// startHTTPS serves the same handler as the HTTP listener over TLS with
// the node's certificate (uploaded or self-signed, node/tls.go). The
// default address (:8443) needs no root; if it is taken the node still
// starts (mail does not depend on the web admin) and says so, while an
// address given explicitly must work.
func (n *Node) startHTTPS() error {
	if n.cfg.HTTPSAddr == "" {
		return nil
	}
	if n.tls == nil {
		return fmt.Errorf("--https-addr: no TLS certificate on this node")
	}
	l, err := n.listen("https", "--https-addr", n.cfg.HTTPSAddr)
	if err != nil {
		if n.cfg.HTTPSAddr == Defaults().HTTPSAddr {
			n.log.Warn("web admin over HTTPS not started", "err", err)
			return nil
		}
		return err
	}
	tcfg := n.tls.Clone()
	tcfg.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:  10 * time.Minute, // account imports upload up to 32 MiB
		WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute, TLSConfig: tcfg}
	n.serveHTTP("https", srv, tls.NewListener(l, tcfg))
	return nil
}
