package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ARC chain validation results (RFC 8617 §4.4: the cv= values).
const (
	ARCNone = "none"
	ARCPass = "pass"
	ARCFail = "fail"
)

// maxARCInstances is the highest instance number allowed (RFC 8617 §4.2.1).
const maxARCInstances = 50

// ARCResult is the validation of a message's Authenticated Received Chain.
type ARCResult struct {
	Result    string // ARCNone, ARCPass or ARCFail
	Instances int    // number of ARC sets
	Sealer    string // d= of the newest ARC-Seal (who forwarded it last)
	Err       error  // why it failed
}

// headerField is one raw header field: its name and the whole field as
// it appears, folding included, ending in CRLF.
type headerField struct {
	name string // lower case
	raw  string
}

// readRawHeader reads the header section of msg field by field (line ends
// made CRLF) and leaves r at the start of the body.
func readRawHeader(r *bufio.Reader) ([]headerField, error) {
	var fields []headerField
	var cur strings.Builder
	total := 0
	flush := func() {
		if cur.Len() == 0 {
			return
		}
		raw := cur.String()
		name, _, _ := strings.Cut(raw, ":")
		fields = append(fields, headerField{name: strings.ToLower(strings.TrimRight(name, " \t")), raw: raw})
		cur.Reset()
	}
	for {
		line, err := r.ReadString('\n')
		total += len(line)
		if total > maxHeaderBytes {
			return nil, errors.New("header section too large")
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			flush()
			return fields, nil // end of header (or of input)
		}
		if trimmed[0] != ' ' && trimmed[0] != '\t' {
			flush()
		}
		cur.WriteString(trimmed)
		cur.WriteString("\r\n")
		if err == io.EOF {
			flush()
			return fields, nil
		}
	}
}

// tagList parses a DKIM-style tag=value list (RFC 6376 §3.2). strict
// follows the grammar exactly (no empty tag-spec except after the last
// ";"), as ARC signatures must; key records in DNS are read leniently.
func tagList(v string, strict bool) (map[string]string, error) {
	tags := map[string]string{}
	parts := strings.Split(v, ";")
	for n, part := range parts {
		if strings.TrimSpace(part) == "" {
			if strict && n != len(parts)-1 {
				return nil, errors.New("empty tag")
			}
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("malformed tag %q", strings.TrimSpace(part))
		}
		k = strings.TrimSpace(k)
		if !validTagName(k) {
			return nil, fmt.Errorf("invalid tag name %q", k)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("duplicate tag %q", k)
		}
		tags[k] = strings.TrimSpace(val)
	}
	return tags, nil
}

// validTagName: tag-name = ALPHA *ALNUMPUNC (RFC 6376 §3.2).
func validTagName(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '_')) {
			return false
		}
	}
	return k != ""
}

func fieldValue(raw string) string {
	_, v, _ := strings.Cut(raw, ":")
	return v
}

// stripB empties the value of the b= tag of a signature field (RFC 6376
// §3.7) and keeps everything else as it was.
func stripB(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	parts := strings.Split(value, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.TrimSpace(k) == "b" {
			parts[i] = k + "="
		}
	}
	return name + ":" + strings.Join(parts, ";")
}

// canonHeaderRelaxed is RFC 6376 §3.4.2.
func canonHeaderRelaxed(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.ReplaceAll(value, "\r\n", "")
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + value + "\r\n"
}

func canonHeader(raw, alg string) string {
	if alg == "simple" {
		return raw
	}
	return canonHeaderRelaxed(raw)
}

// bodyHash hashes the body in the c= body canonicalization (RFC 6376
// §3.4.3, §3.4.4).
func bodyHash(r io.Reader, alg string) ([]byte, error) {
	h := sha256.New()
	br := bufio.NewReader(r)
	blank := 0 // empty lines held back: dropped if nothing follows
	any := false
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		if line == "" && err == io.EOF {
			break
		}
		content := strings.TrimRight(line, "\r\n")
		if alg == "relaxed" {
			content = strings.TrimRight(content, " \t")
			content = strings.Join(strings.FieldsFunc(content, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
			if strings.HasPrefix(strings.TrimRight(line, "\r\n"), " ") || strings.HasPrefix(strings.TrimRight(line, "\r\n"), "\t") {
				if content != "" {
					content = " " + content
				}
			}
		}
		if content == "" {
			blank++
		} else {
			for ; blank > 0; blank-- {
				io.WriteString(h, "\r\n")
			}
			io.WriteString(h, content+"\r\n")
			any = true
		}
		if err == io.EOF {
			break
		}
	}
	if !any && alg == "simple" {
		io.WriteString(h, "\r\n") // §3.4.3: an empty body is one CRLF
	}
	return h.Sum(nil), nil
}

// arcKey fetches the public key at s._domainkey.d (RFC 6376 §3.6.2).
func arcKey(ctx context.Context, res Resolver, domain, selector string) (crypto.PublicKey, error) {
	txts, err := res.LookupTXT(ctx, selector+"._domainkey."+domain)
	if err != nil {
		return nil, fmt.Errorf("key %s._domainkey.%s: %w", selector, domain, err)
	}
	if len(txts) == 0 {
		return nil, fmt.Errorf("key %s._domainkey.%s: no record", selector, domain)
	}
	tags, err := tagList(strings.Join(txts, ""), false)
	if err != nil {
		return nil, fmt.Errorf("key %s._domainkey.%s: %w", selector, domain, err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(tags["p"]), ""))
	if err != nil || len(raw) == 0 {
		return nil, fmt.Errorf("key %s._domainkey.%s: bad or revoked p=", selector, domain)
	}
	switch k := tags["k"]; k {
	case "", "rsa":
		if pub, err := x509.ParsePKIXPublicKey(raw); err == nil {
			if rk, ok := pub.(*rsa.PublicKey); ok {
				return rk, nil
			}
			return nil, errors.New("k=rsa record holds another key type")
		}
		pub, err := x509.ParsePKCS1PublicKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key %s._domainkey.%s: %w", selector, domain, err)
		}
		return pub, nil
	case "ed25519":
		if len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("ed25519 key of wrong size")
		}
		return ed25519.PublicKey(raw), nil
	default:
		return nil, fmt.Errorf("unknown key type k=%s", k)
	}
}

// verifySig checks sig over data with the key of d=/s= for algorithm a=.
func verifySig(ctx context.Context, res Resolver, tags map[string]string, data string) error {
	sig, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(tags["b"]), ""))
	if err != nil {
		return fmt.Errorf("bad b=: %w", err)
	}
	key, err := arcKey(ctx, res, tags["d"], tags["s"])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(data))
	switch tags["a"] {
	case "rsa-sha256":
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return errors.New("a=rsa-sha256 with a non-RSA key")
		}
		if pub.N.BitLen() < 1024 {
			return errors.New("rsa key shorter than 1024 bits") // RFC 8301 §3.2
		}
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
	case "ed25519-sha256":
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return errors.New("a=ed25519-sha256 with a non-Ed25519 key")
		}
		// RFC 8463 §3: Ed25519 signs the SHA-256 hash.
		if !ed25519.Verify(pub, sum[:], sig) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported algorithm a=%s", tags["a"])
}

type arcSet struct {
	aar, ams, as *headerField
	amsTags      map[string]string
	asTags       map[string]string
}

// instanceOf reads i= of an ARC field; for ARC-Authentication-Results it
// is the first element of the value (RFC 8617 §4.1.1).
func instanceOf(f headerField) (int, map[string]string, error) {
	v := fieldValue(f.raw)
	if f.name == "arc-authentication-results" {
		first, _, _ := strings.Cut(v, ";")
		k, n, ok := strings.Cut(first, "=")
		if !ok || strings.TrimSpace(k) != "i" {
			return 0, nil, errors.New("ARC-Authentication-Results without i=")
		}
		i, err := strconv.Atoi(strings.TrimSpace(n))
		return i, nil, err
	}
	tags, err := tagList(v, true)
	if err != nil {
		return 0, nil, err
	}
	i, err := strconv.Atoi(tags["i"])
	return i, tags, err
}

// CheckARC validates the Authenticated Received Chain of a message (RFC
// 8617 §5.2): the structure of the sets, the newest ARC-Message-Signature
// (over the message as it is now) and every ARC-Seal (over the chain up
// to it). A pass says who handled the message and that their recorded
// authentication results are intact; it is reported, not trusted blindly.
func CheckARC(ctx context.Context, res Resolver, msg io.Reader) ARCResult {
	br := bufio.NewReader(msg)
	fields, err := readRawHeader(br)
	if err != nil {
		return ARCResult{Result: ARCFail, Err: fmt.Errorf("arc: %w", err)}
	}
	sets := map[int]*arcSet{}
	maxI := 0
	fail := func(format string, a ...any) ARCResult {
		return ARCResult{Result: ARCFail, Instances: maxI, Err: fmt.Errorf("arc: "+format, a...)}
	}
	for k := range fields {
		f := &fields[k]
		switch f.name {
		case "arc-seal", "arc-message-signature", "arc-authentication-results":
		default:
			continue
		}
		i, tags, err := instanceOf(*f)
		if err != nil || i < 1 || i > maxARCInstances {
			maxI = max(maxI, 1)
			return fail("%s with a bad instance: %v", f.name, err)
		}
		maxI = max(maxI, i)
		s := sets[i]
		if s == nil {
			s = &arcSet{}
			sets[i] = s
		}
		var slot **headerField
		switch f.name {
		case "arc-seal":
			slot, s.asTags = &s.as, tags
		case "arc-message-signature":
			slot, s.amsTags = &s.ams, tags
		default:
			slot = &s.aar
		}
		if *slot != nil {
			return fail("two %s fields for i=%d", f.name, i)
		}
		*slot = f
	}
	if maxI == 0 {
		return ARCResult{Result: ARCNone}
	}
	// §5.2 step 2-3: the newest seal must not already say fail, and the
	// chain must be complete with cv=none only at i=1.
	for i := 1; i <= maxI; i++ {
		s := sets[i]
		if s == nil || s.aar == nil || s.ams == nil || s.as == nil {
			return fail("ARC set %d incomplete", i)
		}
		want := ARCPass
		if i == 1 {
			want = ARCNone
		}
		if cv := strings.ToLower(s.asTags["cv"]); cv != want {
			if i == maxI && cv == ARCFail {
				return fail("the last sealer found the chain broken (cv=fail)")
			}
			return fail("ARC-Seal i=%d has cv=%s, want %s", i, cv, want)
		}
	}
	out := ARCResult{Result: ARCPass, Instances: maxI, Sealer: strings.ToLower(sets[maxI].asTags["d"])}
	// §5.2 step 4: the newest AMS over the message as received.
	if err := verifyAMS(ctx, res, fields, sets[maxI], br); err != nil {
		return fail("ARC-Message-Signature i=%d: %v", maxI, err)
	}
	// §5.2 step 6: each seal over all sets up to its own.
	for i := maxI; i >= 1; i-- {
		var data strings.Builder
		for j := 1; j <= i; j++ {
			s := sets[j]
			data.WriteString(canonHeaderRelaxed(s.aar.raw))
			data.WriteString(canonHeaderRelaxed(s.ams.raw))
			if j < i {
				data.WriteString(canonHeaderRelaxed(s.as.raw))
			} else {
				data.WriteString(strings.TrimSuffix(canonHeaderRelaxed(stripB(s.as.raw)), "\r\n"))
			}
		}
		if err := verifySig(ctx, res, sets[i].asTags, data.String()); err != nil {
			return fail("ARC-Seal i=%d: %v", i, err)
		}
	}
	return out
}

// verifyAMS checks an ARC-Message-Signature like a DKIM signature (RFC
// 8617 §4.1.2): body hash, then the signed header fields picked from the
// bottom up, then the field itself with b= empty.
func verifyAMS(ctx context.Context, res Resolver, fields []headerField, s *arcSet, body io.Reader) error {
	tags := s.amsTags
	for _, t := range []string{"a", "b", "bh", "d", "h", "s"} {
		if tags[t] == "" {
			return fmt.Errorf("missing %s=", t)
		}
	}
	if _, ok := tags["l"]; ok {
		return errors.New("l= is not allowed") // body length limits let content be appended
	}
	hc, bc, _ := strings.Cut(tags["c"], "/")
	if hc == "" {
		hc = "simple"
	}
	if bc == "" {
		bc = "simple"
	}
	for _, c := range []string{hc, bc} {
		if c != "simple" && c != "relaxed" {
			return fmt.Errorf("unknown canonicalization %q", c)
		}
	}
	bh, err := bodyHash(body, bc)
	if err != nil {
		return err
	}
	want, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(tags["bh"]), ""))
	if err != nil || !bytes.Equal(bh, want) {
		return errors.New("body hash does not match: the body was changed")
	}
	for _, name := range strings.Split(tags["h"], ":") {
		// RFC 8617 §4.1.2: seals are outside the AMS's scope.
		if strings.EqualFold(strings.TrimSpace(name), "arc-seal") {
			return errors.New("h= includes ARC-Seal")
		}
	}
	used := map[int]bool{}
	var data strings.Builder
	for _, name := range strings.Split(tags["h"], ":") {
		name = strings.ToLower(strings.TrimSpace(name))
		for k := len(fields) - 1; k >= 0; k-- {
			if fields[k].name == name && !used[k] && &fields[k] != s.ams {
				used[k] = true
				data.WriteString(canonHeader(fields[k].raw, hc))
				break
			}
		}
	}
	data.WriteString(strings.TrimSuffix(canonHeader(stripB(s.ams.raw), hc), "\r\n"))
	return verifySig(ctx, res, tags, data.String())
}
