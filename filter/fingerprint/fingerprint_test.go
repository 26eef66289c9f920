package fingerprint

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage/storetest"
)

const spamText = `Dear John Miller,

Congratulations! You have been selected as the lucky winner of our annual
customer loyalty reward program. Your email address was randomly drawn from
more than two million entries and you are now eligible to claim a brand new
Apple iPhone together with a cash prize of 5000 US dollars. To receive your
reward you only need to confirm your shipping details and pay a small
handling fee of 4.99 by visiting http://claim-prize.example/win?id=12345
within the next 48 hours. After this period the prize will be transferred to
another participant on the waiting list. Do not miss this unique chance, we
are waiting for your answer. Kind regards, The Rewards Team of Global
Shopping International`

// A near-copy: another name, link, amounts and a few words changed.
const spamCopy = `Dear Mary Chen,

Congratulations! You have been chosen as the lucky winner of our yearly
customer loyalty reward program. Your email address was randomly drawn from
more than three million entries and you are now eligible to claim a brand new
Apple iPhone together with a cash prize of 7500 US dollars. To receive your
reward you only need to confirm your delivery details and pay a small
handling fee of 2.99 by visiting https://prize-center.example/x?u=98765
within the next 24 hours. After this period the prize will be transferred to
another participant on the waiting list. Do not miss this unique chance, we
are waiting for your reply. Best regards, The Rewards Team of Global
Shopping International`

const hamText = `Hi team,

the quarterly planning meeting moves to Thursday at ten in the large room on
the third floor. Please bring the updated budget figures for your department
and a short list of the projects you want to start next quarter. Anna will
send the agenda tomorrow morning; if you cannot attend, tell her before
Wednesday so she can arrange a video call. We also need volunteers for the
office move in March, mostly for packing the archive and labelling boxes.
Thanks and see you on Thursday, Peter`

// Same genre as the spam, different wording: must not match.
const otherPromo = `Dear customer, our spring sale starts today with discounts of up to
fifty percent on garden furniture, barbecue grills and outdoor lighting.
Members of the loyalty club get free delivery on every order above a hundred
dollars and an extra voucher for their next purchase. Visit our stores or
shop online before the end of the month. Your Garden World team`

const chineseSpam = `親愛的會員您好，恭喜您獲得本公司週年慶特別大獎，請於三日內點擊以下連結領取價值五萬元的禮品卡，逾期將自動取消資格，詳情請洽客服專線，謝謝您的支持與愛護。`
const chineseCopy = `親愛的客戶您好，恭喜您獲得本公司週年慶特別大獎，請於五日內點擊以下連結領取價值十萬元的禮品卡，逾期將自動取消資格，詳情請洽客服專線，感謝您的支持與愛護。`
const chineseHam = `各位同事好，下週三下午兩點在三樓會議室召開部門會議，請準備本季的工作報告與明年的預算規劃，如無法出席請提前告知行政部，謝謝大家配合。`

func sig(t *testing.T, text string) Signature {
	t.Helper()
	s, err := FromText(text)
	if err != nil {
		t.Fatalf("FromText: %v", err)
	}
	return s
}

func TestSimilarity(t *testing.T) {
	for _, c := range []struct {
		name  string
		a, b  string
		match bool
	}{
		{"near-copy", spamText, spamCopy, true},
		{"identical", spamText, spamText, true},
		{"unrelated ham", spamText, hamText, false},
		{"same genre", spamText, otherPromo, false},
		{"chinese near-copy", chineseSpam, chineseCopy, true},
		{"chinese ham", chineseSpam, chineseHam, false},
	} {
		a, b := sig(t, c.a), sig(t, c.b)
		sim := a.Similarity(&b)
		if (sim >= DefaultThreshold) != c.match {
			t.Errorf("%s: similarity %.2f, want match=%v", c.name, sim, c.match)
		}
		t.Logf("%s: %.2f", c.name, sim)
	}
}

func TestTooShort(t *testing.T) {
	if _, err := FromText("buy now cheap"); err != ErrTooShort {
		t.Errorf("short text: %v", err)
	}
}

func TestSignatureEncoding(t *testing.T) {
	s := sig(t, spamText)
	back, err := ParseSignature(s.String())
	if err != nil || back != s {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseSignature("abc"); err == nil {
		t.Error("bad encoding accepted")
	}
}

func mimeMessage(text string) string {
	html := "<html><head><style>p{color:red}</style></head><body><p>" +
		strings.ReplaceAll(text, "\n", "<br>\n") + "</p><!-- tracking --></body></html>"
	return "From: a@b.test\r\nTo: c@d.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(html)) + "\r\n--XX\r\n" +
		"Content-Type: image/png\r\n\r\nnot text\r\n--XX--\r\n"
}

func TestStage(t *testing.T) {
	st := storetest.New(t)
	set := New(Config{KV: st, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	check := func(msg string) filter.Verdict {
		r := strings.NewReader(msg)
		return set.CheckMessage(ctx, &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1")}, []string{"c@d.test"}, r, int64(len(msg)))
	}
	if v := check(mimeMessage(spamCopy)); v.Score != 0 {
		t.Fatalf("no fingerprints yet: %+v", v)
	}
	// Learned from a plain-text copy, caught in an HTML, base64 copy.
	learned, err := set.AddMessage(ctx, strings.NewReader("Subject: x\r\n\r\n"+spamText))
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Add(ctx, sig(t, otherPromo)); err != nil {
		t.Fatal(err)
	}
	if v := check(mimeMessage(spamCopy)); v.Score != DefaultScore || !strings.Contains(v.Reason, "near-copy of known spam") {
		t.Errorf("near-copy: %+v", v)
	}
	if v := check(mimeMessage(hamText)); v.Score != 0 {
		t.Errorf("ham: %+v", v)
	}
	// Another node's Set sees the fingerprints through the store.
	other := New(Config{KV: st})
	if other.Len() != 2 {
		t.Errorf("second set has %d fingerprints", other.Len())
	}
	if v := other.CheckMessage(ctx, &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), AuthAccountID: 4}, nil,
		strings.NewReader(spamText), int64(len(spamText))); v.Score != 0 {
		t.Errorf("authenticated submission judged: %+v", v)
	}
	// A deleted fingerprint stops matching (the index is rebuilt).
	if err := st.KVDeleteKey(ctx, Namespace, learned.Key()); err != nil {
		t.Fatal(err)
	}
	if v := check(mimeMessage(spamCopy)); v.Score != 0 || set.Len() != 1 {
		t.Errorf("after delete: %d fingerprints, %+v", set.Len(), v)
	}
}

func TestBodyTextBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=B0\r\n\r\n")
	for i := range 2000 {
		b.WriteString("--B" + itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=B" + itoa(i+1) + "\r\n\r\n")
	}
	text, err := BodyText(strings.NewReader(b.String()))
	if err != nil || len(text) > maxTextBytes+1 {
		t.Errorf("bomb: %d bytes, %v", len(text), err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func FuzzFromMessage(f *testing.F) {
	f.Add([]byte(mimeMessage(spamText)))
	f.Add([]byte("Subject: x\r\n\r\n" + chineseSpam))
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := FromMessage(strings.NewReader(string(msg)))
		if err == nil {
			if sim := s.Similarity(&s); sim != 1 {
				t.Fatal("signature differs from itself")
			}
		}
	})
}
