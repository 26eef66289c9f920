// Package virus scans messages for malware (SPEC F3) through an Engine;
// the one engine today is ClamAV's clamd, spoken to over its INSTREAM
// protocol. Stage is the pipeline's MessageCheck: infected mail is refused
// at DATA or quarantined, and when the scanner cannot answer the admin's
// policy decides between a temporary failure (the default) and accepting
// the message marked as unscanned — never a silent accept.
//
// The package keeps no replicated state and owns no KV namespace: the
// scanner is a local daemon per node, configured by node flags.
package virus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Result is a scanner's finding about one message.
type Result struct {
	Infected  bool
	Signature string // the malware's name when Infected, e.g. "Eicar-Test-Signature"
}

// Engine scans one message. An error means the scanner could not give a
// verdict (down, timed out, refused the input); the Stage applies its
// policy then. ErrSizeLimit marks a message too large for the scanner.
type Engine interface {
	Name() string
	Scan(ctx context.Context, r io.Reader, size int64) (Result, error)
}

// ErrSizeLimit: the scanner refused to scan this much data (clamd's
// StreamMaxLength, or the engine's own MaxSize).
var ErrSizeLimit = errors.New("message exceeds the scanner's size limit")

// ErrUnavailable wraps every failure to reach or talk to the scanner.
var ErrUnavailable = errors.New("scanner unavailable")

// Clamd talks to one clamd over a unix socket or TCP. The zero timeouts
// get defaults; a Clamd is safe for concurrent use (one connection per
// scan, as clamd expects for INSTREAM).
type Clamd struct {
	Network string // "unix" or "tcp"
	Addr    string
	// ConnectTimeout bounds dialing (default 2 s); ScanTimeout bounds a
	// whole scan, upload and verdict (default 60 s).
	ConnectTimeout time.Duration
	ScanTimeout    time.Duration
	// MaxSize is the largest message sent to clamd; it should not exceed
	// clamd's StreamMaxLength (default 25 MiB there and here). Larger
	// messages fail with ErrSizeLimit without a connection.
	MaxSize int64
	// ChunkSize is the INSTREAM chunk length (default 64 KiB).
	ChunkSize int
}

// DefaultMaxSize matches clamd's default StreamMaxLength (25M).
const DefaultMaxSize = 25 << 20

// ParseClamdAddr reads the --clamd flag: "unix:/path/clamd.ctl" or
// "host:port".
func ParseClamdAddr(s string) (*Clamd, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if p == "" || !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("clamd address %q: unix socket path must be absolute", s)
		}
		return &Clamd{Network: "unix", Addr: p}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("clamd address %q: want unix:/path or host:port", s)
	}
	return &Clamd{Network: "tcp", Addr: s}, nil
}

// Name is the stage name in verdicts and headers.
func (c *Clamd) Name() string { return "clamav" }

func (c *Clamd) String() string {
	if c.Network == "unix" {
		return "unix:" + c.Addr
	}
	return c.Addr
}

func (c *Clamd) dial(ctx context.Context) (net.Conn, error) {
	to := c.ConnectTimeout
	if to <= 0 {
		to = 2 * time.Second
	}
	d := net.Dialer{Timeout: to}
	conn, err := d.DialContext(ctx, c.Network, c.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to clamd %s: %w", ErrUnavailable, c, err)
	}
	st := c.ScanTimeout
	if st <= 0 {
		st = 60 * time.Second
	}
	dl := time.Now().Add(st)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	return conn, nil
}

// command sends one z-command (NUL-terminated reply) and returns the reply.
func (c *Clamd) command(ctx context.Context, cmd string) (string, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, "z"+cmd+"\x00"); err != nil {
		return "", fmt.Errorf("%w: send %s to clamd %s: %w", ErrUnavailable, cmd, c, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return "", fmt.Errorf("%w: read %s reply from clamd %s: %w", ErrUnavailable, cmd, c, err)
	}
	return reply, nil
}

// Ping checks that clamd answers (its PING command, reply "PONG").
func (c *Clamd) Ping(ctx context.Context) error {
	r, err := c.command(ctx, "PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("%w: clamd %s answered PING with %q", ErrUnavailable, c, r)
	}
	return nil
}

// Version returns clamd's version line, e.g. "ClamAV 1.0.7/27000/...".
func (c *Clamd) Version(ctx context.Context) (string, error) {
	return c.command(ctx, "VERSION")
}

// Scan streams r to clamd with INSTREAM: "zINSTREAM\0", then chunks each
// prefixed by its length as a 4-byte big-endian integer, then a zero
// length; clamd answers "stream: OK", "stream: NAME FOUND" or an error
// such as "INSTREAM size limit exceeded. ERROR" (clamd(8)).
func (c *Clamd) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	max := c.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	if size > max {
		return Result{}, fmt.Errorf("scan %d bytes (limit %d): %w", size, max, ErrSizeLimit)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	werr := c.stream(conn, r, max)
	if errors.Is(werr, ErrSizeLimit) {
		return Result{}, werr
	}
	// clamd may stop reading and answer early (size limit): its reply is
	// worth more than our write error, so read it either way.
	reply, rerr := readReply(conn)
	if rerr != nil {
		if werr != nil {
			return Result{}, fmt.Errorf("%w: stream to clamd %s: %w", ErrUnavailable, c, werr)
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%w: scan at clamd %s: %w", ErrUnavailable, c, ctx.Err())
		}
		return Result{}, fmt.Errorf("%w: read verdict from clamd %s: %w", ErrUnavailable, c, rerr)
	}
	res, err := ParseReply(reply)
	if err != nil && !errors.Is(err, ErrSizeLimit) {
		return Result{}, fmt.Errorf("%w: clamd %s: %w", ErrUnavailable, c, err)
	}
	return res, err
}

// stream writes the INSTREAM command, the chunks and the terminator.
func (c *Clamd) stream(w io.Writer, r io.Reader, max int64) error {
	cs := c.ChunkSize
	if cs <= 0 {
		cs = 64 << 10
	}
	if _, err := io.WriteString(w, "zINSTREAM\x00"); err != nil {
		return err
	}
	buf := make([]byte, 4+cs)
	var sent int64
	for {
		n, err := io.ReadFull(r, buf[4:])
		if n > 0 {
			sent += int64(n)
			if sent > max {
				// The declared size lied; do not feed clamd past its limit.
				return fmt.Errorf("scan more than %d bytes: %w", max, ErrSizeLimit)
			}
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, werr := w.Write(buf[:4+n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	_, err := w.Write([]byte{0, 0, 0, 0})
	return err
}

// maxReply bounds a clamd reply; real ones are a line.
const maxReply = 4096

// readReply reads up to the NUL that ends a z-command reply (or EOF).
func readReply(r io.Reader) (string, error) {
	var b bytes.Buffer
	buf := make([]byte, 512)
	for b.Len() < maxReply {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if i := bytes.IndexByte(b.Bytes(), 0); i >= 0 {
			return strings.TrimSpace(string(b.Bytes()[:i])), nil
		}
		if err == io.EOF {
			if b.Len() == 0 {
				return "", io.ErrUnexpectedEOF
			}
			return strings.TrimSpace(b.String()), nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than %d bytes", maxReply)
}

// ParseReply reads clamd's answer to INSTREAM. Forms (clamd(8)):
// "stream: OK", "stream: <signature> FOUND", "<message> ERROR", and for an
// over-long stream "INSTREAM size limit exceeded. ERROR".
func ParseReply(s string) (Result, error) {
	s = strings.TrimRight(s, "\x00\r\n ")
	// With IDSESSION clamd prefixes a request number ("1: stream: OK");
	// the stream's own name is "stream".
	body := s
	if i := strings.Index(s, "stream: "); i >= 0 {
		body = s[i+len("stream: "):]
	}
	switch {
	case strings.Contains(s, "size limit exceeded"):
		return Result{}, fmt.Errorf("clamd: %s: %w", s, ErrSizeLimit)
	case strings.HasSuffix(s, " ERROR"):
		return Result{}, fmt.Errorf("clamd error: %s", strings.TrimSuffix(s, " ERROR"))
	case body == "OK" && body != s:
		return Result{}, nil
	case strings.HasSuffix(body, " FOUND") && body != s:
		sig := strings.TrimSpace(strings.TrimSuffix(body, " FOUND"))
		if sig == "" || strings.ContainsAny(sig, "\r\n") {
			return Result{}, fmt.Errorf("clamd: malformed FOUND reply %q", s)
		}
		return Result{Infected: true, Signature: sig}, nil
	}
	return Result{}, fmt.Errorf("clamd: unexpected reply %q", s)
}
