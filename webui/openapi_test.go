package webui

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// routePattern finds the API routes registered in this package: every
// route is a literal "METHOD /api/..." pattern given to HandleFunc or
// Handle (keep it that way, so this test sees it).
// updateOpenAPI adds a stub entry for each undocumented route to
// openapi.json (then write its summary by hand):
//
//	go test ./webui -run TestOpenAPICoversEveryRoute -update-openapi
var updateOpenAPI = flag.Bool("update-openapi", false, "add stub entries for undocumented routes to openapi.json")

var routePattern = regexp.MustCompile(`Handle(?:Func)?\("([A-Z]+) (/api/[^"]*)"`)

func registeredRoutes(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routePattern.FindAllStringSubmatch(string(src), -1) {
			routes[m[1]+" "+m[2]] = true
		}
	}
	if len(routes) < 10 {
		t.Fatalf("found only %d routes: the pattern no longer matches the code", len(routes))
	}
	return routes
}

type openAPIOp struct {
	Summary    string `json:"summary"`
	Parameters []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	Responses map[string]any `json:"responses"`
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                          `json:"openapi"`
		Paths   map[string]map[string]openAPIOp `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	routes := registeredRoutes(t)
	var missing, stale []string
	for r := range routes {
		method, path, _ := strings.Cut(r, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			missing = append(missing, r)
			continue
		}
		if op.Summary == "" || len(op.Responses) == 0 {
			t.Errorf("%s: no summary or no responses", r)
		}
		// Every {param} of the path is declared.
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
			found := false
			for _, p := range op.Parameters {
				found = found || (p.In == "path" && p.Name == m[1])
			}
			if !found {
				t.Errorf("%s: path parameter %s not declared", r, m[1])
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !routes[strings.ToUpper(method)+" "+path] {
				stale = append(stale, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 && *updateOpenAPI {
		addOpenAPIStubs(t, missing)
		return
	}
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.json (document them, or run with -update-openapi to add stubs):\n  %s", strings.Join(missing, "\n  "))
	}
	if len(stale) > 0 {
		t.Errorf("openapi.json documents routes that do not exist:\n  %s", strings.Join(stale, "\n  "))
	}
}

func TestOpenAPIServed(t *testing.T) {
	srv, _ := w2Server(t, nil)
	code, body := call(t, srv, "GET", "/api/openapi.json", nil)
	if code != http.StatusOK || !json.Valid(body) || !strings.Contains(string(body), `"/api/network/apply"`) {
		t.Fatalf("%d %.200s", code, body)
	}
}

func addOpenAPIStubs(t *testing.T, routes []string) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		ops, _ := paths[path].(map[string]any)
		if ops == nil {
			ops = map[string]any{}
			paths[path] = ops
		}
		parts := strings.Split(strings.TrimPrefix(path, "/api/"), "/")
		op := map[string]any{"summary": r, "tags": []string{strings.ToUpper(parts[0][:1]) + parts[0][1:]},
			"responses": map[string]any{"2XX": map[string]any{"description": "Success"},
				"4XX": map[string]any{"$ref": "#/components/responses/Error"}}}
		var params []any
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		ops[strings.ToLower(method)] = op
	}
	out, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("openapi.json", append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("added %d stub entries to openapi.json: write their summaries", len(routes))
}
