package virus_test

import (
	"archive/zip"
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/virus"
	"github.com/tandemmail/tandem/filter/virus/clamdtest"
)

// MIME bombs (RELIABILITY #29 and issue 5): each gets a verdict from the
// real clamd in bounded time, and the verdict is never "scanner
// unavailable" (which would make the sender retry the bomb forever).
func TestMIMEBombs(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	eng, err := virus.ParseClamdAddr(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	st := &virus.Stage{Engine: eng}
	hdr := "From: x@outside.example\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n"

	var siblings strings.Builder
	siblings.WriteString(hdr + "Content-Type: multipart/mixed; boundary=\"s\"\r\n\r\n")
	for i := 0; i < 20000; i++ {
		siblings.WriteString("--s\r\nContent-Type: text/plain\r\n\r\npart " + strconv.Itoa(i) + "\r\n")
	}
	siblings.WriteString("--s--\r\n")

	var nested strings.Builder
	nested.WriteString(hdr + "Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	for i := 0; i < 10000; i++ {
		nested.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + strconv.Itoa(i+1) + "\"\r\n\r\n")
	}

	rfc822 := "Subject: innermost\r\n\r\nhello\r\n"
	for i := 0; i < 1000; i++ {
		rfc822 = "Subject: level " + strconv.Itoa(i) + "\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + rfc822
	}

	// 100 MiB of zeros deflate to about 100 KiB.
	var bomb bytes.Buffer
	zw := zip.NewWriter(&bomb)
	w, _ := zw.Create("zeros.bin")
	zero := make([]byte, 1<<20)
	for i := 0; i < 100; i++ {
		w.Write(zero)
	}
	zw.Close()
	// EICAR after the bomb in the same zip must still be found.
	var bombEicar bytes.Buffer
	zw = zip.NewWriter(&bombEicar)
	w, _ = zw.Create("zeros.bin")
	for i := 0; i < 20; i++ {
		w.Write(zero)
	}
	w, _ = zw.Create("eicar.com")
	w.Write([]byte(clamdtest.EICAR))
	zw.Close()

	tests := []struct {
		name string
		msg  string
		want filter.Action // -1: any verdict but tempfail
	}{
		{"20000 sibling parts", siblings.String(), -1},
		{"10000 nested multiparts", nested.String(), -1},
		{"1000 nested message/rfc822", hdr + rfc822, -1},
		{"broken base64", hdr + "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("!!@@==QUJD\r\n", 10000), -1},
		{"huge header", hdr + strings.Repeat("X-Filler: "+strings.Repeat("a", 990)+"\r\n", 1000) + "\r\nbody\r\n", -1},
		{"zip bomb", mime("bomb.zip", "application/zip", bomb.Bytes()), -1},
		{"eicar behind a zip bomb", mime("bomb.zip", "application/zip", bombEicar.Bytes()), filter.ActionReject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			v := check(st, tc.msg, 0)
			d := time.Since(start)
			t.Logf("%d bytes: %v %q in %v", len(tc.msg), v.Action, v.Reason, d)
			if v.Action == filter.ActionTempFail {
				t.Fatalf("scanner failed on it: %s", v.Reason)
			}
			if tc.want >= 0 && v.Action != tc.want {
				t.Fatalf("action %v, want %v", v.Action, tc.want)
			}
			if d > 30*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	if err := eng.Ping(t.Context()); err != nil {
		t.Fatalf("clamd gone after the bombs: %v", err)
	}
}
