// Package filter is the staged delivery pipeline. Every way mail enters
// Tandem (SMTP, webmail send, gateway relay, migration) delivers through a
// Deliverer: Begin → AddRcpt… → Body (commits) or Abort. The Pipeline is
// such a Deliverer wrapping storage: it applies the relay rules, resolves
// recipients, checks the sender of authenticated users, runs the check
// stages (ConnCheck, EnvelopeCheck, MessageCheck) and commits the message
// through Raft.
//
// What this package must not do: speak a wire protocol (it never imports
// go-smtp) or write state other than through storage's Raft-applied methods.
// Its errors are *Reject values carrying the SMTP reply code and the RFC 3463
// enhanced status code; protocol layers translate them in one place.
package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// Envelope is what a protocol layer knows about a message before its body:
// the connection, the authenticated account and the reverse-path.
type Envelope struct {
	ID            string // message ID for logs and the Received header, e.g. 26 base32 characters
	ClientIP      net.IP
	HELO          string
	TLS           bool
	AuthAccountID uint64 // 0: not authenticated
	From          string // reverse-path; "" is the null sender <>
	SMTPUTF8      bool   // RFC 6531 SMTPUTF8 parameter on MAIL
	Body8BIT      bool   // RFC 6152 BODY=8BITMIME
	Size          int64  // RFC 1870 SIZE= declared on MAIL; 0 when unknown

	// Trace holds complete trace header fields (RFC 5321 §4.4 Received,
	// each ending in CRLF) that Body prepends to the stored message. The
	// protocol layer may set it until it calls Body; it is not counted as a
	// hop of the incoming message.
	Trace string
}

// Deliverer starts a delivery. Implementations: *Pipeline; tests use fakes.
type Deliverer interface {
	Begin(ctx context.Context, env *Envelope) (Transaction, error)
}

// Transaction is one message being delivered. AddRcpt may be called many
// times; Body reads the whole message and, when it returns nil, the message
// is durably committed for every accepted recipient. Abort abandons the
// transaction; it is safe to call after Body, more than once, and from
// another goroutine while Body runs (whose reader then fails).
type Transaction interface {
	AddRcpt(ctx context.Context, addr string) error
	Body(ctx context.Context, r io.Reader) error
	Abort()
}

// Reject is a refusal with its SMTP reply code (RFC 5321 §4.2) and enhanced
// status code (RFC 3463). It is the only error type of policy decisions;
// protocol layers map it, and nothing else, to their replies.
type Reject struct {
	Code     int
	Enhanced [3]int
	Msg      string
	Err      error // the cause, for logs; never shown to the client
}

func (r *Reject) Error() string {
	s := fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Msg)
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

func (r *Reject) Unwrap() error { return r.Err }

// Temporary reports whether the client should retry later (4xx).
func (r *Reject) Temporary() bool { return r.Code/100 == 4 }

// AsReject returns the *Reject in err's chain.
func AsReject(err error) (*Reject, bool) {
	var r *Reject
	ok := errors.As(err, &r)
	return r, ok
}

func reject(code int, enh [3]int, msg string, cause error) *Reject {
	return &Reject{Code: code, Enhanced: enh, Msg: msg, Err: cause}
}
