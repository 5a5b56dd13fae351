"""TLS for the peer port and the pairing listener, pinned to node keys (never to a CA, a name or an address).

Each node has a self-signed leaf certificate for its key (`sparkd.identity`). The peer
port requires a client certificate and trusts exactly the paired peers' certificates as
its roots; a client trusts exactly the one peer it dials. A key other than the pinned
one fails the TLS handshake, before any message is read. grpcio's server credentials
either require a verified client certificate or never ask for one, so pairing, where
the worker's key is not known yet, has a listener of its own that asks for none (the
worker pins the head's key; the head learns the worker's from the join request).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from sparkd.identity import tls_name

#: Before authentication (the TLS handshake, and everything on the pairing listener): small and short.
HANDSHAKE_TIMEOUT_MS = 5_000
PRE_AUTH_MAX_MESSAGE = 4 * 1024


@dataclass(frozen=True)
class KeyPair:
    """This node's key and certificate, PEM, as gRPC takes them."""

    key_pem: bytes
    cert_pem: bytes


def peer_server_credentials(own: KeyPair, peer_certs: list[str]) -> grpc.ServerCredentials:
    """The peer port: a client must present one of `peer_certs` (the paired peers)."""
    roots = "".join(c if c.endswith("\n") else c + "\n" for c in sorted(set(peer_certs)))
    return grpc.ssl_server_credentials(
        [(own.key_pem, own.cert_pem)], root_certificates=roots.encode(), require_client_auth=True
    )


def pairing_server_credentials(own: KeyPair) -> grpc.ServerCredentials:
    """The pairing listener: TLS with this head's key; no client certificate (see the module docstring)."""
    return grpc.ssl_server_credentials([(own.key_pem, own.cert_pem)], require_client_auth=False)


def channel_credentials(own: KeyPair | None, peer_cert: str) -> grpc.ChannelCredentials:
    """Trusts exactly `peer_cert`; presents this node's certificate (none when pairing)."""
    if own is None:
        return grpc.ssl_channel_credentials(root_certificates=peer_cert.encode())
    return grpc.ssl_channel_credentials(
        root_certificates=peer_cert.encode(), private_key=own.key_pem, certificate_chain=own.cert_pem
    )


def channel_options(peer_id: str) -> list[tuple[str, object]]:
    """The name to check in the peer's certificate: derived from its node ID (the address proves nothing)."""
    return [("grpc.ssl_target_name_override", tls_name(peer_id)), ("grpc.default_authority", tls_name(peer_id))]


def caller_certificate(context: grpc.aio.ServicerContext) -> str:
    """The certificate the TLS layer verified for this call's client, PEM; "" when there is none."""
    certs = context.auth_context().get("x509_pem_cert") or []
    if len(certs) != 1:
        return ""
    cert = certs[0]
    return cert.decode(errors="replace") if isinstance(cert, bytes) else str(cert)
