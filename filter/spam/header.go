package spam

import (
	"strconv"
	"strings"
)

// maxReceived is how many Received fields (RFC 5321 §4.4, newest first) are
// mined for relay hints; older hops add little and loops add thousands.
const maxReceived = 8

// headers tokenizes a header block: subject words, addresses, relays
// (Received), Message-ID and mailer. depth 0 is the message's own header;
// deeper blocks (forwarded message/rfc822 parts) give only their subject,
// sender and mailer, so a forwarded spam does not look like its relays.
func (t *tokenizer) headers(h header, depth int) {
	if depth == 0 {
		_, p := mediaType(h.get("Content-Type"))
		t.charset = p["charset"]
	}
	received, rcpts := 0, 0
	var fromDom, rpDom, midDom string
	for i, f := range h {
		if i >= t.lim.MaxHeaderFields {
			t.add("hdr:too-many")
			break
		}
		v := f.value
		if len(v) > t.lim.MaxFieldBytes {
			v = v[:t.lim.MaxFieldBytes]
			t.add("hdr:long")
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			// Bare CR, LF or NUL inside a field (RELIABILITY #31).
			t.add("hdr:ctl")
			v = strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' || r == 0 {
					return ' '
				}
				return r
			}, v)
		}
		key := strings.ToLower(f.key)
		switch key {
		case "subject":
			s := decodeHeaderValue(v, t)
			t.text("s:", s)
			t.subjectShape(s)
		case "from":
			t.addresses("from:", decodeHeaderValue(v, t), true)
			fromDom = orgDomain(firstDomain(v))
		case "to", "cc":
			if depth == 0 {
				rcpts += t.addresses("to:", v, false)
			}
		case "reply-to", "sender", "return-path", "errors-to":
			if depth == 0 {
				t.addresses(key+":", v, false)
			}
			if key == "return-path" {
				rpDom = orgDomain(firstDomain(v))
			}
		case "received":
			if depth == 0 && received < maxReceived {
				t.received(v)
			}
			received++
		case "message-id":
			if depth == 0 {
				t.messageID(v)
				midDom = orgDomain(firstDomain(v))
			}
		case "x-mailer", "user-agent", "x-mimeole":
			t.text("xm:", v)
		default:
			// Other fields give nothing: neither their presence nor their
			// words helped on the validation set (they mostly fingerprint
			// mailing-list software), and dates say when, not what.
		}
	}
	if depth == 0 && fromDom != "" {
		// Alignment, in the spirit of DMARC (RFC 7489 §3.1): real mailers
		// send from the organization they claim; forgers rarely line up.
		t.add("align:mid:" + strconv.FormatBool(midDom == fromDom))
		t.add("align:return-path:" + strconv.FormatBool(rpDom == fromDom))
	}
	if depth == 0 {
		t.add("rcvd:n:" + bucket(received))
		t.add("to:n:" + bucket(rcpts))
	}
}

// bucket turns a count into a coarse label so tokens generalize.
func bucket(n int) string {
	switch {
	case n <= 3:
		return strconv.Itoa(n)
	case n <= 6:
		return "4-6"
	case n <= 10:
		return "7-10"
	case n <= 30:
		return "11-30"
	}
	return "many"
}

// subjectShape adds hints about how a subject looks rather than what it says.
func (t *tokenizer) subjectShape(s string) {
	letters, upper := 0, 0
	for _, r := range s {
		if 'a' <= r && r <= 'z' {
			letters++
		} else if 'A' <= r && r <= 'Z' {
			letters++
			upper++
		}
	}
	if letters >= 8 && upper*10 >= letters*9 {
		t.add("s:shape:caps")
	}
	if strings.Contains(s, "!!") {
		t.add("s:shape:bang")
	}
	if strings.Contains(s, "$") {
		t.add("s:shape:dollar")
	}
	if strings.TrimSpace(s) == "" {
		t.add("s:shape:empty")
	}
}

// addresses tokenizes an address list: each address's domain (with its parent
// domains), the whole address for senders, and display-name words; it returns
// how many addresses it saw.
func (t *tokenizer) addresses(prefix, v string, sender bool) int {
	n := 0
	rest := v
	for len(rest) > 0 && n < 50 {
		at := strings.IndexByte(rest, '@')
		if at < 0 {
			break
		}
		start := at
		for start > 0 && isAddrByte(rest[start-1]) {
			start--
		}
		end := at + 1
		for end < len(rest) && isAddrByte(rest[end]) {
			end++
		}
		local := strings.ToLower(rest[start:at])
		domain := strings.ToLower(strings.Trim(rest[at+1:end], "."))
		if sender && n == 0 {
			// Display name: the text before the first address.
			t.text(prefix+"name:", strings.Trim(rest[:start], ` "<'`))
			if local != "" && domain != "" {
				t.add(prefix + "addr:" + local + "@" + domain)
			}
		}
		if domain != "" {
			t.domain(prefix, domain)
		}
		n++
		rest = rest[end:]
	}
	if n == 0 {
		t.add(prefix + "none")
		if strings.Contains(strings.ToLower(v), "undisclosed") {
			t.add(prefix + "undisclosed")
		}
	}
	return n
}

func isAddrByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '-' || c == '_' || c == '+' || c == '=' || c >= 0x80
}

// domain adds a host name and its parent domains: "mx.mail.example.com"
// gives mx.mail.example.com, mail.example.com, example.com and com.
func (t *tokenizer) domain(prefix, d string) {
	if len(d) > 253 {
		d = d[:253]
	}
	for i := 0; i < 6 && d != ""; i++ {
		dot := strings.IndexByte(d, '.')
		if dot < 0 && i > 0 {
			break // a bare top-level domain says little
		}
		t.add(prefix + d)
		if dot < 0 {
			break
		}
		d = d[dot+1:]
	}
}

// received mines a Received field (RFC 5321 §4.4: "from" name, address
// literal, "by" name, "with" protocol) for relay hints.
func (t *tokenizer) received(v string) {
	lv := strings.ToLower(v)
	for _, kw := range []string{"from ", "by "} {
		if i := strings.Index(lv, kw); i >= 0 {
			host := lv[i+len(kw):]
			end := 0
			for end < len(host) && isAddrByte(host[end]) {
				end++
			}
			if h := strings.Trim(host[:end], "."); strings.Contains(h, ".") {
				t.domain("rcvd:"+kw[:len(kw)-1]+":", h)
			}
		}
	}
	if i := strings.Index(lv, " with "); i >= 0 {
		w := lv[i+6:]
		if j := strings.IndexAny(w, " ;("); j >= 0 {
			w = w[:j]
		}
		t.add("rcvd:with:" + w)
	}
	// Address literals: [a.b.c.d] as a /24 and a /16 hint.
	for rest := lv; ; {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], ']')
		if j < 0 {
			break
		}
		ip := rest[i+1 : i+j]
		rest = rest[i+j:]
		if parts := strings.Split(ip, "."); len(parts) == 4 {
			t.add("rcvd:ip:" + parts[0] + "." + parts[1] + "." + parts[2])
			t.add("rcvd:ip:" + parts[0] + "." + parts[1])
		}
	}
}

// messageID adds the domain part of a Message-ID (RFC 5322 §3.6.4): spamware
// invents them, real mailers use their own host.
func (t *tokenizer) messageID(v string) {
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		t.add("mid:none")
		return
	}
	d := strings.ToLower(strings.TrimRight(v[at+1:], "> \t"))
	if d == "" {
		t.add("mid:none")
		return
	}
	t.domain("mid:", d)
}

// firstDomain returns the domain of the first address in v.
func firstDomain(v string) string {
	at := strings.IndexByte(v, '@')
	if at < 0 {
		return ""
	}
	end := at + 1
	for end < len(v) && isAddrByte(v[end]) {
		end++
	}
	return strings.ToLower(strings.Trim(v[at+1:end], "."))
}

// orgDomain approximates the organizational domain (RFC 7489 §3.2) without
// the public suffix list: the last two labels, or three when the second
// to last is a short second-level label under a country code (co.uk,
// com.cn, com.tw).
func orgDomain(d string) string {
	labels := strings.Split(d, ".")
	n := len(labels)
	if n < 2 {
		return d
	}
	if n >= 3 && len(labels[n-1]) == 2 && len(labels[n-2]) <= 3 {
		return strings.Join(labels[n-3:], ".")
	}
	return labels[n-2] + "." + labels[n-1]
}
