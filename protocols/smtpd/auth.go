package smtpd

import (
	"context"
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/tandemmail/tandem/storage"
)

// AccountStore is the part of *storage.Store that checks passwords.
type AccountStore interface {
	Authenticate(ctx context.Context, address, password string) (storage.Account, error)
}

// StoreAuth authenticates against the account store.
func StoreAuth(st AccountStore) Authenticator {
	return AuthFunc(func(ctx context.Context, user, password string) (uint64, error) {
		a, err := st.Authenticate(ctx, user, password)
		if err != nil {
			return 0, err
		}
		return a.ID, nil
	})
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:" then "Password:", each
// answered in base64. go-sasl has only the client side.
type loginServer struct {
	authenticate func(user, password string) error
	user         []byte
	step         int
}

var errLoginDone = errors.New("sasl login: unexpected response")

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		// Initial response carries the user name (RFC 4954 §4).
		fallthrough
	case 1:
		l.user = response
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(string(l.user), string(response))
	}
	return nil, true, errLoginDone
}

var _ sasl.Server = (*loginServer)(nil)
