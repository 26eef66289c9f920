package imapd

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// corpus holds messages of the shapes FETCH must handle. They are also
// the fuzz seeds of FuzzParseMIME.
var corpus = map[string]string{
	"simple": "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Hello there\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-Id: <m1@example.org>\r\n\r\nHello\r\nWorld\r\n",
	"alternative": "From: a@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nPGI+R3LDvMOfZTwvYj4=\r\n--b1--\r\nepilogue\r\n",
	"mixed": "From: a@example.org\r\nTo: b@example.com, \"C D\" <c@example.com>\r\nSubject: report\r\n" +
		"Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\n" +
		"see attached\r\n--outer\r\nContent-Type: application/pdf; name=r.pdf\r\n" +
		"Content-Disposition: attachment; filename=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"JVBERi0xLjQK\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.net\r\n" +
		"Subject: inner\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n" +
		"Content-Type: text/plain\r\n\r\ninner text\r\n--inner\r\nContent-Type: text/html\r\n\r\n" +
		"<p>inner</p>\r\n--inner--\r\n\r\n--outer--\r\n",
	"bare-lf": "Subject: lf\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n" +
		"one\ntwo\n--zz\nContent-Type: text/plain\n\nthree\n--zz--\n",
	"nested": "Subject: nest\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
		"Content-Type: multipart/related; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n" +
		"--c\r\nContent-Type: text/plain\r\n\r\nplain\r\n--c\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--c--\r\n" +
		"--b\r\nContent-Type: image/png\r\nContent-Id: <img1>\r\n\r\nPNGDATA\r\n--b--\r\n--a\r\nContent-Type: text/plain\r\n\r\nlast\r\n--a--\r\n",
	"digest": "Subject: digest\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n" +
		"From: one@example.org\r\nSubject: first\r\n\r\nbody one\r\n--d\r\n\r\nFrom: two@example.org\r\nSubject: second\r\n\r\nbody two\r\n--d--\r\n",
	"no-header-end": "Subject: only a header\r\nX-Other: y\r\n",
	"empty":         "",
}

// sectionsToCompare are checked against go-imap's ExtractBodySection.
var sectionsToCompare = []*imap.FetchItemBodySection{
	{},
	{Specifier: imap.PartSpecifierText},
	{Part: []int{1}},
	{Part: []int{2}},
	{Part: []int{3}},
	{Part: []int{1, 1}},
	{Part: []int{1, 2}},
	{Part: []int{3, 1}},
	{Part: []int{3, 2}},
	{Part: []int{1, 1, 2}},
	{Part: []int{3}, Specifier: imap.PartSpecifierText},
	{Part: []int{9}},
	{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 3, Size: 7}},
	{Partial: &imap.SectionPartial{Offset: 1 << 20, Size: 7}},
}

func parseString(t testing.TB, msg string) *mimePart {
	t.Helper()
	root, err := parseMIME(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func sectionBytes(t testing.TB, msg string, s section) []byte {
	t.Helper()
	b, err := io.ReadAll(s.reader(strings.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != s.size() {
		t.Fatalf("section size %d, read %d", s.size(), len(b))
	}
	return b
}

// TestSectionsMatchGoIMAP is a differential test: our offset-based
// sections must equal what go-imap's in-memory helper extracts.
func TestSectionsMatchGoIMAP(t *testing.T) {
	for name, msg := range corpus {
		root := parseString(t, msg)
		if root.end != int64(len(msg)) {
			t.Errorf("%s: root end %d, want %d", name, root.end, len(msg))
		}
		for _, item := range sectionsToCompare {
			got := sectionBytes(t, msg, bodySection(root, item))
			want := imapserver.ExtractBodySection(strings.NewReader(msg), item)
			if len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone {
				// go-imap re-serialises the header; we return the stored
				// bytes, which RFC822.SIZE counts.
				want = []byte(msg)
				if p := item.Partial; p != nil {
					want = want[min(int(p.Offset), len(want)):min(int(p.Offset+p.Size), len(want))]
				}
			}
			if !bytes.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s BODY[%v %s]:\n got %q\nwant %q", name, item.Part, item.Specifier, got, want)
			}
		}
	}
}

func TestHeaderSections(t *testing.T) {
	msg := corpus["mixed"]
	root := parseString(t, msg)
	for _, tc := range []struct {
		item *imap.FetchItemBodySection
		want string
	}{
		{&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader},
			msg[:strings.Index(msg, "\r\n\r\n")+4]},
		{&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "FROM"}},
			"From: a@example.org\r\nSubject: report\r\n\r\n"},
		{&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"To", "Content-Type"}},
			"From: a@example.org\r\nSubject: report\r\n\r\n"},
		{&imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierMIME},
			"Content-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"},
		{&imap.FetchItemBodySection{Part: []int{3}, Specifier: imap.PartSpecifierHeader},
			"From: inner@example.net\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"},
		{&imap.FetchItemBodySection{Part: []int{3}, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
			"Subject: inner\r\n\r\n"},
		{&imap.FetchItemBodySection{Part: []int{3, 1}, Specifier: imap.PartSpecifierMIME},
			"Content-Type: text/plain\r\n\r\n"},
	} {
		if got := string(sectionBytes(t, msg, bodySection(root, tc.item))); got != tc.want {
			t.Errorf("BODY[%v %s %v %v] = %q, want %q", tc.item.Part, tc.item.Specifier, tc.item.HeaderFields, tc.item.HeaderFieldsNot, got, tc.want)
		}
	}
}

// TestBodyStructureMatchesGoIMAP compares with go-imap's
// ExtractBodyStructure on well-formed messages.
func TestBodyStructureMatchesGoIMAP(t *testing.T) {
	for _, name := range []string{"simple", "alternative", "mixed", "bare-lf", "nested"} {
		msg := corpus[name]
		got := bodyStructure(parseString(t, msg))
		want := imapserver.ExtractBodyStructure(strings.NewReader(msg))
		normalizeBS(want)
		if name == "simple" {
			// No Content-Type: RFC 2045 §5.2 defaults, spelled out.
			want.(*imap.BodyStructureSinglePart).Params = map[string]string{"charset": "us-ascii"}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, dumpBS(got), dumpBS(want))
		}
	}
}

// normalizeBS adapts go-imap's structure to our deliberate differences:
// default text/plain parameters and lower-case encodings.
func normalizeBS(bs imap.BodyStructure) {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if bs.Type == "" {
			bs.Type, bs.Subtype, bs.Params = "text", "plain", map[string]string{"charset": "us-ascii"}
		}
		bs.Encoding = strings.ToLower(bs.Encoding)
		if bs.MessageRFC822 != nil {
			normalizeBS(bs.MessageRFC822.BodyStructure)
		}
	case *imap.BodyStructureMultiPart:
		for _, c := range bs.Children {
			normalizeBS(c)
		}
	}
}

func dumpBS(bs imap.BodyStructure) string {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		s := fmt.Sprintf("(%s/%s %v id=%q enc=%q size=%d", bs.Type, bs.Subtype, bs.Params, bs.ID, bs.Encoding, bs.Size)
		if bs.Text != nil {
			s += fmt.Sprintf(" lines=%d", bs.Text.NumLines)
		}
		if bs.MessageRFC822 != nil {
			s += fmt.Sprintf(" msg lines=%d %s", bs.MessageRFC822.NumLines, dumpBS(bs.MessageRFC822.BodyStructure))
		}
		if bs.Extended != nil {
			s += fmt.Sprintf(" ext=%+v", *bs.Extended)
		}
		return s + ")"
	case *imap.BodyStructureMultiPart:
		s := "(multipart/" + bs.Subtype
		for _, c := range bs.Children {
			s += " " + dumpBS(c)
		}
		if bs.Extended != nil {
			s += fmt.Sprintf(" ext=%+v", *bs.Extended)
		}
		return s + ")"
	}
	return "nil"
}

func TestBinarySection(t *testing.T) {
	msg := corpus["alternative"]
	root := parseString(t, msg)
	for _, tc := range []struct {
		part []int
		want string
	}{
		{[]int{1}, "Grüße aus Köln"},
		{[]int{2}, "<b>Grüße</b>"},
	} {
		s, err := binarySection(strings.NewReader(msg), root, tc.part, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimRight(string(s.data), "\r\n"); got != tc.want {
			t.Errorf("BINARY[%v] = %q, want %q", tc.part, got, tc.want)
		}
	}
	bad := "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
	if _, err := binarySection(strings.NewReader(bad), parseString(t, bad), []int{1}, nil); codeOf(err) != imap.ResponseCodeUnknownCTE {
		t.Errorf("unknown CTE: %v", err)
	}
	if got := decodeBase64Lenient([]byte("aGVs\r\nbG8g!!d29y\r\nbGQ")); string(got) != "hello world" {
		t.Errorf("lenient base64: %q", got)
	}
}

// TestMIMEBombs: deep nesting and huge part counts parse in linear time
// with depth and count capped (RELIABILITY #29).
func TestMIMEBombs(t *testing.T) {
	var deep strings.Builder
	const depth = 10000
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	var rfc822 strings.Builder
	for i := 0; i < 1000; i++ {
		rfc822.WriteString("Subject: level\r\nContent-Type: message/rfc822\r\n\r\n")
	}
	rfc822.WriteString("Subject: bottom\r\n\r\nbody\r\n")
	var wide strings.Builder
	wide.WriteString("Content-Type: multipart/mixed; boundary=w\r\n\r\n")
	for i := 0; i < 100000; i++ {
		wide.WriteString("--w\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	wide.WriteString("--w--\r\n")

	for name, msg := range map[string]string{"deep": deep.String(), "rfc822": rfc822.String(), "wide": wide.String()} {
		start := time.Now()
		root := parseString(t, msg)
		bs := bodyStructure(root)
		var buf bytes.Buffer
		// Every section path stays cheap, even an absurd one.
		long := make([]int, 1000)
		for i := range long {
			long[i] = 1
		}
		buf.Write(sectionBytes(t, msg, bodySection(root, &imap.FetchItemBodySection{Part: long})))
		if d := time.Since(start); d > timeSlack*2*time.Second {
			t.Errorf("%s: %v", name, d)
		}
		if got := maxDepth(bs); got > maxMIMEDepth+1 {
			t.Errorf("%s: structure depth %d", name, got)
		}
		if n := countParts(root); n > maxMIMEParts {
			t.Errorf("%s: %d parts", name, n)
		}
	}
}

func maxDepth(bs imap.BodyStructure) int {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		d := 0
		for _, c := range bs.Children {
			d = max(d, maxDepth(c))
		}
		return d + 1
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil {
			return maxDepth(bs.MessageRFC822.BodyStructure) + 1
		}
	}
	return 1
}

func countParts(p *mimePart) int {
	n := 1
	for _, c := range p.children {
		n += countParts(c)
	}
	if p.message != nil {
		n += countParts(p.message)
	}
	return n
}

// FuzzParseMIME: any input parses, offsets are consistent, and every
// section stays inside the message.
func FuzzParseMIME(f *testing.F) {
	for _, m := range corpus {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		root, err := parseMIME(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		var check func(p *mimePart)
		check = func(p *mimePart) {
			if p.headerStart > p.bodyStart || p.bodyStart > p.end || p.end > int64(len(msg)) {
				t.Fatalf("bad offsets %d %d %d of %d", p.headerStart, p.bodyStart, p.end, len(msg))
			}
			for _, c := range p.children {
				check(c)
			}
			if p.message != nil {
				check(p.message)
			}
		}
		check(root)
		_ = bodyStructure(root)
		for _, item := range sectionsToCompare {
			sectionBytes(t, msg, bodySection(root, item))
		}
		if _, err := binarySection(strings.NewReader(msg), root, []int{1}, nil); err != nil && codeOf(err) != imap.ResponseCodeUnknownCTE {
			t.Fatal(err)
		}
	})
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, fmt.Errorf("read past the header") }

// TestParseHeaderOnly: header-only parsing agrees with a full parse and
// never reads the body.
func TestParseHeaderOnly(t *testing.T) {
	for name, msg := range corpus {
		full := parseString(t, msg)
		// Only the header and its blank line are readable.
		var r io.Reader = strings.NewReader(msg)
		if full.bodyStart < int64(len(msg)) {
			r = io.MultiReader(strings.NewReader(msg[:full.bodyStart]), failReader{})
		}
		top, err := parseMIMEHeader(r, int64(len(msg)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if top.bodyStart != full.bodyStart || top.end != full.end || top.mediaType != full.mediaType ||
			top.header.Get("Subject") != full.header.Get("Subject") {
			t.Errorf("%s: header-only %d/%d/%s, full %d/%d/%s", name, top.bodyStart, top.end, top.mediaType,
				full.bodyStart, full.end, full.mediaType)
		}
		for _, item := range []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader},
			{Specifier: imap.PartSpecifierText}, {Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}} {
			if a, b := sectionBytes(t, msg, bodySection(top, item)), sectionBytes(t, msg, bodySection(full, item)); !bytes.Equal(a, b) {
				t.Errorf("%s %s: %q vs %q", name, item.Specifier, a, b)
			}
		}
	}
}
