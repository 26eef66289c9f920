package webui

// GET /api/openapi.json: the OpenAPI 3.1 description of every /api route
// (issue 7: "the API is documented"). The document is hand-written
// (openapi.json) and embedded; TestOpenAPICoversEveryRoute fails when a
// route registered in this package is missing from it.

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.json
var openAPIDoc []byte

func (a *API) routesOpenAPI() {
	a.mux.HandleFunc("GET /api/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(openAPIDoc)
	})
}
