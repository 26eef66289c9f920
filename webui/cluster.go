package webui

import (
	"context"
	"errors"
	"net/http"
)

// ClusterOps is what the API needs of the node's cluster membership.
type ClusterOps interface {
	ClusterStatus() any
	// JoinCommand is the command line that adds a new box to this cluster.
	JoinCommand() (string, error)
	Leave(ctx context.Context) error
	Remove(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
}

var errNoCluster = errors.New("this node runs without --cluster-addr: it is a cluster of one")

func (a *API) routesCluster() {
	a.routesPromote()
	a.routesDrill()
	m := a.mux
	m.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Cluster == nil {
			writeError(w, http.StatusNotFound, errNoCluster)
			return
		}
		writeJSON(w, http.StatusOK, a.cfg.Cluster.ClusterStatus())
	})
	m.HandleFunc("GET /api/cluster/join-command", func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Cluster == nil {
			writeError(w, http.StatusNotFound, errNoCluster)
			return
		}
		cmd, err := a.cfg.Cluster.JoinCommand()
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"command": cmd})
	})
	m.HandleFunc("POST /api/cluster/leave", func(w http.ResponseWriter, r *http.Request) {
		a.clusterOp(w, func() error { return a.cfg.Cluster.Leave(r.Context()) })
	})
	m.HandleFunc("POST /api/cluster/remove", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID string `json:"id"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.ID == "" {
			writeError(w, http.StatusBadRequest, errors.New("remove: give the node id"))
			return
		}
		a.clusterOp(w, func() error { return a.cfg.Cluster.Remove(r.Context(), req.ID) })
	})
	m.HandleFunc("POST /api/cluster/transfer-leadership", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID string `json:"id"`
		}
		if !decode(w, r, &req) {
			return
		}
		a.clusterOp(w, func() error { return a.cfg.Cluster.TransferLeadership(r.Context(), req.ID) })
	})
}

func (a *API) clusterOp(w http.ResponseWriter, op func() error) {
	if a.cfg.Cluster == nil {
		writeError(w, http.StatusNotFound, errNoCluster)
		return
	}
	if err := op(); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Promoter is implemented by nodes that can promote themselves.
type Promoter interface {
	Promote(ctx context.Context, reason string) error
}

func (a *API) routesPromote() {
	a.mux.HandleFunc("POST /api/cluster/promote", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Confirm string `json:"confirm"`
			Reason  string `json:"reason"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Confirm != "i-understand-split-brain" {
			writeError(w, http.StatusBadRequest, errors.New(`promote: confirm with "i-understand-split-brain": if the other box is alive and serving, you get two clusters`))
			return
		}
		p, ok := a.cfg.Cluster.(Promoter)
		if !ok {
			writeError(w, http.StatusNotFound, errNoCluster)
			return
		}
		a.clusterOp(w, func() error { return p.Promote(r.Context(), req.Reason) })
	})
}

// Driller runs failover drills (SPEC H4).
type Driller interface {
	Drill(ctx context.Context, kill bool, target string) (any, error)
}

func (a *API) routesDrill() {
	a.mux.HandleFunc("POST /api/cluster/drill", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Kill   bool   `json:"kill"`
			Target string `json:"target"`
		}
		if !decode(w, r, &req) {
			return
		}
		d, ok := a.cfg.Cluster.(Driller)
		if !ok {
			writeError(w, http.StatusNotFound, errNoCluster)
			return
		}
		rep, err := d.Drill(r.Context(), req.Kill, req.Target)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
}
