package webui

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// w2Server is an API over a fresh store, with optional config changes.
func w2Server(t *testing.T, change func(*APIConfig)) (*httptest.Server, *storage.Store) {
	t.Helper()
	s := storetest.New(t)
	cfg := APIConfig{Store: s, Status: func() any { return nil }}
	if change != nil {
		change(&cfg)
	}
	srv := httptest.NewServer(NewAPI(cfg))
	t.Cleanup(srv.Close)
	return srv, s
}

// call sends a JSON request and returns the status and body.
func call(t *testing.T, srv *httptest.Server, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// errorOf is the "error" member of a JSON error answer.
func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error answer: %s", body)
	}
	return e.Error
}
