package smtpd

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// ErrAuthFailed may be returned by an Authenticator for bad credentials.
var ErrAuthFailed = errors.New("authentication failed")

// replyFor is the one place where errors become SMTP replies: filter
// rejections carry their codes, go-smtp errors pass through, and anything
// else is a temporary local error, so mail that was not committed is
// retried by the client, never lost.
func replyFor(err error) *smtp.SMTPError {
	if r, ok := filter.AsReject(err); ok {
		return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Msg}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}
}

// replyLine formats a one-line reply (RFC 5321 §4.2, RFC 2034).
func replyLine(r *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}

func isAuthFailure(err error) bool {
	return errors.Is(err, storage.ErrAuthFailed) || errors.Is(err, ErrAuthFailed)
}
