package node

// imapServer is replaced when protocols/imapd lands.
func (n *Node) imapServer() tlsServer { return nil }
