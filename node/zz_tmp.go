package node

func (n *Node) startServices() error      { return nil }
func (n *Node) ListenerSummary() []string { return nil }
