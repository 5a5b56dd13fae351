"""sparkd: run one LLM across several NVIDIA DGX Spark workstations.

The daemon's layers, from the outside in: `api` (thin gRPC servicers) and `peer`
(daemon-to-daemon protocol) -> `engine` (desired state, plans, deployments) ->
`render` (pure file renderers) -> `host` (the only code that touches the OS).
`rpc` (what both gRPC servers share: errors, authorization, limits) serves both. `system` wires them
together; `lab` simulates a cluster on one machine.
"""

__version__ = "0.1.0"

#: Additive revision of the sparkd.v1 API (bumped with every new field or RPC).
API_REVISION = 2

#: Versions of the sparkd.peer.v1 protocol this daemon speaks (2: mutual TLS, epochs, versions). Peers agree on
#: the newest version both speak.
PEER_PROTOCOL_MIN = 2
PEER_PROTOCOL_MAX = 2
