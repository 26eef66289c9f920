package virus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		in      string
		want    Result
		wantErr error // nil: no error; errAny: some other error
	}{
		{"stream: OK", Result{}, nil},
		{"stream: OK\x00", Result{}, nil},
		{"1: stream: OK", Result{}, nil},
		{"stream: Eicar-Test-Signature FOUND", Result{Infected: true, Signature: "Eicar-Test-Signature"}, nil},
		{"stream: Win.Test.EICAR_HDB-1 FOUND\x00", Result{Infected: true, Signature: "Win.Test.EICAR_HDB-1"}, nil},
		{"INSTREAM size limit exceeded. ERROR", Result{}, ErrSizeLimit},
		{"stream: Can't allocate memory ERROR", Result{}, errAny},
		{"UNKNOWN COMMAND", Result{}, errAny},
		{"", Result{}, errAny},
		{"OK", Result{}, errAny},
		{"stream:  FOUND", Result{}, errAny},
	}
	for _, tc := range tests {
		got, err := ParseReply(tc.in)
		switch {
		case tc.wantErr == nil && err != nil:
			t.Errorf("ParseReply(%q): %v", tc.in, err)
		case tc.wantErr == errAny && err == nil:
			t.Errorf("ParseReply(%q) = %+v, want an error", tc.in, got)
		case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
			t.Errorf("ParseReply(%q) error %v, want %v", tc.in, err, tc.wantErr)
		case got != tc.want:
			t.Errorf("ParseReply(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

var errAny = errors.New("any error")

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: X FOUND", "INSTREAM size limit exceeded. ERROR", "a ERROR", "1: stream: OK\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReply(s)
		if err == nil && r.Infected && (r.Signature == "" || strings.ContainsAny(r.Signature, "\r\n")) {
			t.Fatalf("ParseReply(%q) = %+v: infected without a clean signature", s, r)
		}
		if err != nil && r.Infected {
			t.Fatalf("ParseReply(%q): infected and an error", s)
		}
	})
}

func TestParseClamdAddr(t *testing.T) {
	tests := []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "unix:/run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "127.0.0.1:3310", network: "tcp", addr: "127.0.0.1:3310"},
		{in: "[::1]:3310", network: "tcp", addr: "[::1]:3310"},
		{in: "clamav.example:3310", network: "tcp", addr: "clamav.example:3310"},
		{in: "unix:", bad: true},
		{in: "unix:relative.sock", bad: true},
		{in: "localhost", bad: true},
		{in: ":3310", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		c, err := ParseClamdAddr(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseClamdAddr(%q) = %+v, want an error", tc.in, c)
			}
			continue
		}
		if err != nil || c.Network != tc.network || c.Addr != tc.addr {
			t.Errorf("ParseClamdAddr(%q) = %+v, %v; want %s %s", tc.in, c, err, tc.network, tc.addr)
		}
	}
}

// fakeClamd accepts one connection, decodes the INSTREAM framing and
// answers with reply(data).
func fakeClamd(t *testing.T, reply func(cmd string, data []byte) string) *Clamd {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var cb []byte // the command, byte by byte up to its NUL
				one := make([]byte, 1)
				for {
					if _, err := io.ReadFull(conn, one); err != nil {
						return
					}
					if one[0] == 0 {
						break
					}
					cb = append(cb, one[0])
				}
				cmd := string(cb)
				var data bytes.Buffer
				if cmd == "zINSTREAM" {
					for {
						var n uint32
						if binary.Read(conn, binary.BigEndian, &n) != nil {
							return
						}
						if n == 0 {
							break
						}
						if _, err := io.CopyN(&data, conn, int64(n)); err != nil {
							return
						}
					}
				}
				if r := reply(cmd, data.Bytes()); r != "" {
					io.WriteString(conn, r+"\x00")
				}
			}()
		}
	}()
	return &Clamd{Network: "unix", Addr: sock, ChunkSize: 7, ConnectTimeout: time.Second, ScanTimeout: 2 * time.Second}
}

func TestClamdFraming(t *testing.T) {
	var got []byte
	c := fakeClamd(t, func(cmd string, data []byte) string {
		switch cmd {
		case "zPING":
			return "PONG"
		case "zINSTREAM":
			got = append([]byte(nil), data...)
			if bytes.Contains(data, []byte("BAD")) {
				return "stream: Bad.Thing FOUND"
			}
			return "stream: OK"
		}
		return "UNKNOWN COMMAND"
	})
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	msg := "Subject: hi\r\n\r\nsome body longer than one chunk\r\n"
	res, err := c.Scan(ctx, strings.NewReader(msg), int64(len(msg)))
	if err != nil || res.Infected {
		t.Fatalf("Scan clean = %+v, %v", res, err)
	}
	if string(got) != msg {
		t.Fatalf("clamd received %q, want %q", got, msg)
	}
	res, err = c.Scan(ctx, strings.NewReader("xx BAD xx"), 9)
	if err != nil || !res.Infected || res.Signature != "Bad.Thing" {
		t.Fatalf("Scan infected = %+v, %v", res, err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("Version: %v", err)
	}
}

func TestClamdTimeoutAndDown(t *testing.T) {
	// A clamd that never answers: the scan timeout ends the wait.
	c := fakeClamd(t, func(string, []byte) string { time.Sleep(5 * time.Second); return "" })
	c.ScanTimeout = 200 * time.Millisecond
	start := time.Now()
	_, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Scan against a hung clamd: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	down := &Clamd{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock")}
	if _, err := down.Scan(context.Background(), strings.NewReader("x"), 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Scan with no clamd: %v, want ErrUnavailable", err)
	}
	if err := down.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with no clamd: %v", err)
	}
	// Declared size over MaxSize: refused before connecting.
	small := &Clamd{Network: "unix", Addr: down.Addr, MaxSize: 10}
	if _, err := small.Scan(context.Background(), strings.NewReader(strings.Repeat("x", 11)), 11); !errors.Is(err, ErrSizeLimit) {
		t.Fatalf("oversized scan: %v, want ErrSizeLimit", err)
	}
}
