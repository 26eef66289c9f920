package webui

// The DNS and Filters pages of the web admin (SPEC W1; DNS D1, filters
// F1/F2). Both are thin: the page scripts (web/static/admin_more.js) read and
// write through the JSON API (webui/dns.go, webui/filter.go,
// webui/filterlists.go), so the API's validation and error messages are
// what the admin sees. They are global-only, because the DNS and filter
// routes are not in the domain administrators' scope table (scope.go).
// They keep no state of their own and own no KV namespace.

// morePages are the DNS and Filters pages; builtinPages adds them.
func (wb *Web) morePages() []Page {
	return []Page{
		{Name: "dns", Path: "/dns", Title: "dns.title", NavKey: "nav.dns", GlobalOnly: true, Data: wb.domainChoice},
		{Name: "filters", Path: "/filters", Title: "filters.title", NavKey: "nav.filters", GlobalOnly: true, Data: wb.domainChoice},
	}
}
