"""sparkd: run one LLM across several NVIDIA DGX Spark workstations.

The daemon's layers, from the outside in: `api` (thin gRPC servicers) and `peer`
(daemon-to-daemon protocol) -> `engine` (desired state, plans, deployments) ->
`render` (pure file renderers) -> `host` (the only code that touches the OS).
`rpc` (what both gRPC servers share: errors, authorization, limits) serves both. `system` wires them
together; `lab` simulates a cluster on one machine.
"""

__version__ = "0.1.0"

#: Additive revision of the sparkd.v1 API (bumped with every new field or RPC).
API_REVISION = 1

#: Version of the sparkd.peer.v1 protocol this daemon speaks.
PEER_PROTOCOL_VERSION = 1
