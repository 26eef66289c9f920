package spam

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
)

// isBlockTag reports tags that separate words; other tags (b, font, span,
// a ...) and comments do not, so "V<b></b>iag<!-- x -->ra" reads as the word
// the sender meant.
func isBlockTag(tag string) bool {
	switch tag {
	case "br", "p", "div", "td", "th", "tr", "li", "table", "title", "h1", "h2", "h3",
		"h4", "h5", "h6", "hr", "ul", "ol", "blockquote", "center", "body", "head",
		"html", "img", "option", "pre", "dd", "dt", "tbody", "form", "input":
		return true
	}
	return false
}

// html reduces an HTML part to text plus hints about its markup and links.
func (t *tokenizer) html(s string) {
	z := html.NewTokenizer(strings.NewReader(s))
	var text bytes.Buffer
	skip := 0 // inside <script> or <style>
	tags := 0
	flush := func() {
		if text.Len() > 0 {
			t.text("", text.String())
			text.Reset()
		}
	}
	for !t.full() {
		switch z.Next() {
		case html.ErrorToken:
			flush()
			return
		case html.TextToken:
			if skip == 0 {
				text.Write(z.Text())
				if text.Len() > 32<<10 {
					flush()
				}
			}
		case html.CommentToken:
			t.add("html:comment")
		case html.StartTagToken, html.SelfClosingTagToken:
			tags++
			name, hasAttr := z.TagName()
			tag := string(name)
			if tag == "script" || tag == "style" {
				skip++
			}
			if isBlockTag(tag) {
				text.WriteByte(' ')
			}
			if hasAttr && tags < 5000 {
				t.htmlAttrs(z)
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			if (tag == "script" || tag == "style") && skip > 0 {
				skip--
			}
			if isBlockTag(tag) {
				text.WriteByte(' ')
			}
		}
	}
}

// htmlAttrs adds a tag's links and hints of text meant to be unseen.
// Markup style (colours, fonts, sizes) is left out on purpose: it marks
// commercial mail of every kind, and on the validation set it turned
// legitimate newsletters into confident false positives.
func (t *tokenizer) htmlAttrs(z *html.Tokenizer) {
	for more := true; more; {
		var k, v []byte
		k, v, more = z.TagAttr()
		key := string(k)
		switch {
		case key == "href" || key == "src" || key == "action" || key == "background":
			val := strings.TrimSpace(string(v))
			switch {
			case urlLen(val) > 0:
				t.url(val)
			case hasPrefixFold(val, "mailto:"):
				addr, _, _ := strings.Cut(val[7:], "?") // RFC 6068 §2: hfields follow "?"
				t.text("", addr)
			case hasPrefixFold(val, "cid:"):
				t.add("html:cid")
			}
		case key == "style":
			st := strings.ToLower(string(v))
			st = strings.ReplaceAll(st, " ", "")
			if strings.Contains(st, "display:none") || strings.Contains(st, "visibility:hidden") {
				t.add("html:hidden")
			}
			if strings.Contains(st, "font-size:0") || strings.Contains(st, "font-size:1px") {
				t.add("html:tiny")
			}
		}
	}
}
