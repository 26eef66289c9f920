package node

import "github.com/tandemmail/tandem/protocols/imapd"

// imapServer builds the IMAP server shared by the 143 and 993 listeners.
func (n *Node) imapServer() tlsServer {
	return imapd.New(imapd.Config{Store: n.store, TLSConfig: n.tls, AllowInsecureAuth: n.cfg.AllowInsecureAuth,
		Logger: n.log.With("service", "imap"), AppendLimit: uint32(min(n.cfg.MaxMessageBytes, 1<<31-1)),
		Transferred: n.spamTransferred, AuthGuard: n.imapAuthGuard()}) // node/firewall.go
}
