"""Verifying a twin from one side: a don't-fragment ping at the full MTU to the other node's address.

A frame of exactly the MTU (payload MTU - 28: the IPv4 and ICMP headers) with DF set either
crosses the cable whole or not at all, so one answer proves both ends agree on the MTU and
the addresses. Each ping leaves through the twin whose subnet holds the address (`-I`), and
an address on no twin's subnet is refused, never pinged: peer traffic stays on the link.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from sparkd.errors import InvalidSpec, PreconditionFailed
from sparkd.host.protocols import Runner
from sparkd.model.host import DesiredHost

MAX_TARGETS = 8
PING_TIMEOUT_S = 6.0


async def ping_peers(runner: Runner, desired: DesiredHost, addresses: Sequence[str], mtu: int) -> list[str]:
    """One line per address that did not answer a full-MTU don't-fragment ping ([] when all did)."""
    if len(addresses) > MAX_TARGETS or not 1280 <= mtu <= 9216:
        raise InvalidSpec.one(
            "addresses", f"a link check takes at most {MAX_TARGETS} addresses and an MTU of 1280..9216"
        )
    ping = runner.which("ping")
    if ping is None:
        raise PreconditionFailed("there is no ping on this node (install iputils-ping): cannot verify the link")
    failures = []
    for text in addresses:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            failures.append(f"{text[:40]!r} is not an IPv4 address")
            continue
        twin = next(
            (
                t
                for t in desired.twins
                if address in t.address.network
                and address
                not in (t.address.ip, t.address.network.network_address, t.address.network.broadcast_address)
            ),
            None,
        )
        if twin is None:
            failures.append(f"{address} is on no twin's subnet: not pinged")
            continue
        argv = [
            ping,
            "-n",
            "-q",
            "-M",
            "do",
            "-s",
            str(mtu - 28),
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            twin.netdev,
            str(address),
        ]
        result = await runner.run(argv, PING_TIMEOUT_S)
        if result.returncode != 0:
            failures.append(
                f"{address} did not answer a {mtu}-byte don't-fragment ping out of {twin.netdev} "
                "(cable, the peer's MTU or address, or its twin is down)"
            )
    return failures
