package webui

import (
	"errors"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/filter/dkimsign"
)

// routesSignature: which domains send the secure-signature link (SPEC S2).
func (a *API) routesSignature() {
	a.mux.HandleFunc("GET /api/signature", func(w http.ResponseWriter, r *http.Request) {
		ds, err := dkimsign.SignatureDomains(a.cfg.Store)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ds)
	})
	a.mux.HandleFunc("PUT /api/domains/{name}/signature", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Enabled *bool `json:"enabled"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Enabled == nil {
			writeError(w, http.StatusBadRequest, errors.New(`body needs "enabled": true or false`))
			return
		}
		name := r.PathValue("name")
		if err := dkimsign.SetSignature(r.Context(), a.cfg.Store, name, *req.Enabled, time.Now()); err != nil {
			if errors.Is(err, dkimsign.ErrNoDomain) {
				writeError(w, http.StatusNotFound, err)
				return
			}
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"domain": name, "enabled": *req.Enabled})
	})
}
