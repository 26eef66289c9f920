package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
)

// Mail gateway mode (SPEC M9): a hosted domain relayed to backend hosts.
// The configuration lives in the replicated KV namespace
// outbound.GatewayNS; node/gateway.go reads it for every recipient.

type gatewayRequest struct {
	Backends   []string `json:"backends"`
	Verify     string   `json:"verify"`
	Recipients []string `json:"recipients"`
}

func (a *API) routesGateway() {
	m := a.mux
	m.HandleFunc("GET /api/gateway", func(w http.ResponseWriter, r *http.Request) {
		gs, err := outbound.ListGateways(a.cfg.Store)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, gs)
	})
	m.HandleFunc("GET /api/domains/{name}/gateway", func(w http.ResponseWriter, r *http.Request) {
		name := strings.ToLower(r.PathValue("name"))
		g, ok, err := outbound.LoadGateway(a.cfg.Store, name)
		switch {
		case err != nil:
			writeError(w, http.StatusInternalServerError, err)
		case !ok:
			writeError(w, http.StatusNotFound, fmt.Errorf("domain %s is not a gateway domain", name))
		default:
			writeJSON(w, http.StatusOK, g)
		}
	})
	m.HandleFunc("PUT /api/domains/{name}/gateway", func(w http.ResponseWriter, r *http.Request) {
		var req gatewayRequest
		if !decode(w, r, &req) {
			return
		}
		g := outbound.GatewayDomain{Domain: r.PathValue("name"), Backends: req.Backends, Verify: req.Verify,
			Recipients: req.Recipients, Updated: time.Now().UTC()}
		if err := g.Normalize(); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if !a.cfg.Store.HasDomain(g.Domain) {
			// MX mail is accepted only for hosted domains; the gateway
			// rides on that.
			writeError(w, http.StatusNotFound, fmt.Errorf("domain %s is not hosted here: add it first (domain add %s): %w",
				g.Domain, g.Domain, storage.ErrNoDomain))
			return
		}
		v, err := json.Marshal(g)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		if len(v) > storage.MaxKVValue {
			writeError(w, http.StatusRequestEntityTooLarge, errors.New("gateway configuration too large: use fewer recipients"))
			return
		}
		if err := a.cfg.Store.KVPutValue(r.Context(), outbound.GatewayNS, g.Domain, v); err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, g)
	})
	m.HandleFunc("DELETE /api/domains/{name}/gateway", func(w http.ResponseWriter, r *http.Request) {
		name := strings.ToLower(r.PathValue("name"))
		_, ok, err := outbound.LoadGateway(a.cfg.Store, name)
		switch {
		case err != nil:
			writeError(w, http.StatusInternalServerError, err)
			return
		case !ok:
			writeError(w, http.StatusNotFound, fmt.Errorf("domain %s is not a gateway domain", name))
			return
		}
		if err := a.cfg.Store.KVDeleteKey(r.Context(), outbound.GatewayNS, name); err != nil {
			a.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
