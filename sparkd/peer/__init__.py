"""The daemon-to-daemon layer (sparkd.peer.v1): listener, heartbeat, and calls to peers.

Peer traffic stays on the interconnect: the listener binds only this node's
interconnect addresses, and a peer is dialed only when the kernel's route to it leaves
through one of this node's twin netdevs (`RouteGuard`). Plaintext in this revision;
pairing and mutual TLS pinned to the node keys come next.
"""
