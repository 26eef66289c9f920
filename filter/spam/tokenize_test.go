package spam

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

func tokenSet(t *testing.T, msg string) map[string]bool {
	t.Helper()
	toks, err := Tokenize(context.Background(), strings.NewReader(msg), Limits{})
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	set := make(map[string]bool, len(toks))
	for _, tok := range toks {
		if set[tok] {
			t.Errorf("token %q returned twice", tok)
		}
		set[tok] = true
	}
	return set
}

func mustEncode(t *testing.T, enc interface{ String(string) (string, error) }, s string) string {
	t.Helper()
	out, err := enc.String(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestTokenize(t *testing.T) {
	gbk := func(s string) string {
		return mustEncode(t, simplifiedchinese.GBK.NewEncoder(), s)
	}
	big5 := func(s string) string {
		return mustEncode(t, traditionalchinese.Big5.NewEncoder(), s)
	}
	tests := []struct {
		name    string
		msg     string
		want    []string
		notWant []string
	}{{
		name: "headers",
		msg: "From sender@example.org Mon Jan  1 00:00:00 2024\r\n" +
			"Received: from mail.sender.example (mail.sender.example [192.0.2.25])\r\n\tby mx.tandem.example with ESMTP id 1; Mon, 1 Jan 2024\r\n" +
			"From: \"Big Sale\" <offers@Shop.Example.COM>\r\n" +
			"To: alice@tandem.example, bob@tandem.example\r\n" +
			"Reply-To: claims@other.example\r\n" +
			"Subject: FREE Money Inside\r\n" +
			"X-Mailer: MassMailer 3.1\r\n" +
			"Message-ID: <123@bulk.example>\r\n" +
			"\r\nbody\r\n",
		want: []string{
			"rcvd:from:mail.sender.example", "rcvd:from:sender.example", "rcvd:by:mx.tandem.example",
			"rcvd:with:esmtp", "rcvd:ip:192.0.2", "rcvd:ip:192.0", "rcvd:n:1",
			"from:name:big", "from:name:sale", "from:addr:offers@shop.example.com", "from:shop.example.com", "from:example.com",
			"to:tandem.example", "to:n:2", "reply-to:other.example",
			"s:free", "s:money", "s:inside", "xm:massmailer", "mid:bulk.example", "body",
			"align:mid:false", "align:return-path:false",
		},
		notWant: []string{"from:com", "sender", "free"}, // no bare TLD; the mbox line is not a header
	}, {
		name: "base64 part",
		msg: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64("Lowest mortgage rates guaranteed") + "\r\n",
		want:    []string{"lowest", "mortgage", "rates", "guaranteed"},
		notWant: []string{"ct:text/plain", "cte:base64"},
	}, {
		name: "quoted-printable latin1",
		msg: "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"caf=E9 cr=E8me br=FBl=\r\nee soft=\r\nbreak\r\n",
		want:    []string{"café", "crème", "brûlee", "softbreak"},
		notWant: []string{"mime:bad-qp"},
	}, {
		name: "html",
		msg: "Content-Type: text/html\r\n\r\n" +
			`<html><head><style>.x{color:red}</style><script>var hidden="scriptword";</script></head>` +
			`<body><p>Buy V<!-- x -->iag<b></b>ra</p><a href="http://Www.Pills.Example/buy/now">here</a>` +
			`<div style="display: none">stuffing</div><img src="cid:logo">` +
			"<a href=\"http://split.\nexample/pa\nth\">x</a><a href='http://64.57.207.\r\n12/'>y</a><a href=\"http://%63asino.example/\">z</a></body></html>",
		want:    []string{"buy", "viagra", "here", "url:www.pills.example", "url:pills.example", "url:p:buy", "url:p:now", "html:comment", "html:hidden", "html:cid", "stuffing"},
		notWant: []string{"scriptword", "color", "url:example"},
	}, {
		name: "html sent as text/plain",
		msg:  "Subject: x\r\n\r\n<html><body>Cheap&nbsp;<b>watches</b> &amp; bags</body></html>",
		want: []string{"cheap", "watches", "bags"},
	}, {
		name: "urls in text",
		msg:  "\r\nsee http://user@198.51.100.7:8080/login.php and https://sub.Shop.example/a%20b?x=1 or www.plain.example.\r\n",
		want: []string{"url:userinfo", "url:port", "url:ip", "url:p:login", "url:p:php", "url:https",
			"url:sub.shop.example", "url:shop.example", "url:escaped", "url:www.plain.example", "see"},
		notWant: []string{"url:example"},
	}, {
		name:    "chinese utf-8 bigrams",
		msg:     "Content-Type: text/plain; charset=utf-8\r\n\r\n垃圾邮件，好。\r\n",
		want:    []string{"垃圾", "圾邮", "邮件", "好"},
		notWant: []string{"垃圾邮件", "垃", "，"},
	}, {
		name: "gb2312 base64",
		msg: "Content-Type: text/plain; charset=GB2312\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64(gbk("代开发票")) + "\r\n",
		want: []string{"代开", "开发", "发票"},
	}, {
		name: "big5 8bit",
		msg:  "Content-Type: text/plain; charset=big5\r\n\r\n" + big5("網路賭場") + "\r\n",
		want: []string{"網路", "路賭", "賭場"},
	}, {
		name: "encoded-word subject",
		msg:  "Subject: =?gb2312?B?" + b64(gbk("免费赠送")) + "?= now\r\n\r\n",
		want: []string{"s:免费", "s:费赠", "s:赠送", "s:now", "hcs:gb2312"},
	}, {
		name: "raw 8-bit gb2312 subject",
		msg:  "Content-Type: text/plain; charset=gb2312\r\nSubject: " + gbk("发票") + "\r\n\r\n",
		want: []string{"s:发票", "hdr:8bit"},
	}, {
		name: "fullwidth letters and kana",
		msg:  "\r\nＦＲＥＥ ｍｏｎｅｙ カタカナ\r\n",
		want: []string{"free", "money", "カタ", "タカ", "カナ"},
	}, {
		name: "nested multipart and attached message",
		msg: "Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
			"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
			"--inner\r\nContent-Type: text/plain\r\n\r\nplainword\r\n" +
			"--inner\r\nContent-Type: text/html\r\n\r\n<p>htmlword</p>\r\n--inner--\r\n" +
			"--outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: innersubject\r\nFrom: x@fwd.example\r\n\r\ninnerbody\r\n" +
			"--outer\r\nContent-Type: application/octet-stream; name=\"invoice.EXE\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n" +
			"--outer--\r\n",
		want: []string{"plainword", "htmlword",
			"ct:message/rfc822", "s:innersubject", "from:fwd.example", "innerbody",
			"ct:application/octet-stream", "fn:ext:exe", "fn:invoice.exe"},
		notWant: []string{"mime:broken-multipart", "ct:multipart/mixed"},
	}, {
		name: "broken encodings",
		msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64("survivor words")[:12] + "!!##\r\n" +
			"--b\r\nContent-Type: text/plain; charset=x-no-such\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad=ZZqp =\r\n" +
			"--b--\r\n",
		want: []string{"mime:bad-base64", "mime:bad-qp", "cs:unknown", "bad", "zzqp", "survivor"},
	}, {
		name: "overlong word",
		msg:  "\r\n" + strings.Repeat("a", 70) + " " + strings.Repeat("7", 130) + "\r\n",
		want: []string{"skip:a:70", "skip:9:100+"},
	}, {
		name: "malformed header line is skipped",
		msg:  "Subject: first\r\nthis line has no colon\r\nX-Mailer: after\r\n\r\nbodyword\r\n",
		want: []string{"s:first", "xm:after", "bodyword"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tokenSet(t, tt.msg)
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("missing token %q", w)
				}
			}
			for _, w := range tt.notWant {
				if got[w] {
					t.Errorf("unexpected token %q", w)
				}
			}
			if t.Failed() {
				t.Logf("tokens: %q", keys(got))
			}
			for tok := range got {
				if !utf8.ValidString(tok) {
					t.Errorf("token %q is not UTF-8", tok)
				}
			}
		})
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTokenizeMaxTokens(t *testing.T) {
	var b strings.Builder
	b.WriteString("\r\n")
	for i := range 20000 {
		b.WriteString("w")
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 1+i/26%20))
		b.WriteString(string(rune('a' + i/520%26)))
		b.WriteString(" ")
	}
	toks, err := Tokenize(context.Background(), strings.NewReader(b.String()), Limits{MaxTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 100 {
		t.Fatalf("got %d tokens, want the cap of 100", len(toks))
	}
}

type failingReader struct{ after int }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errDisk
	}
	n := min(len(p), f.after)
	for i := range n {
		p[i] = 'a'
	}
	f.after -= n
	return n, nil
}

func TestTokenizeReadError(t *testing.T) {
	_, err := Tokenize(context.Background(), io.MultiReader(strings.NewReader("Subject: x\r\n\r\n"), &failingReader{after: 100}), Limits{})
	if !errors.Is(err, errDisk) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}

func TestTokenizeCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Tokenize(ctx, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
