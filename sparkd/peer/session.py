"""The worker's session with its head: heartbeats, failure detection, redial and rendezvous.

Every `peer.heartbeat_s` (0.5 s) the worker says hello to the head, each hello bounded
by a third of `peer.timeout_s`. The head is declared DISCONNECTED once no hello has
succeeded for `peer.timeout_s` (3 s): short blips (a 1 s pause of either process, a
second of heavy loss) cost a hello or two and never a peer-down. Once down, the channel
is closed and the worker redials with backoff 1, 2, 4, 8, 8 ... s, and at once when
netlink reports a link change on the interconnect (the carrier is back): `wake()`.

Each session starts with a rendezvous: a hello with `rendezvous` set, answered with a new
epoch that every later hello, and every StartPart and StopPart from the head, carries.
The worker refuses a part request from another epoch (a stale head, or one from before
a restart). A refused hello (the head forgot the session: it declared this worker down,
or restarted, or this worker's boot ID changed) makes the next hello a rendezvous.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import grpc
import structlog

from sparkd import PEER_PROTOCOL_MIN
from sparkd.engine.membership import Membership
from sparkd.errors import PreconditionFailed, SparkdError
from sparkd.model.peer import PeerInfo, PeerState
from sparkd.peer import convert
from sparkd.peer.manager import PeerManager
from sparkd.peer.v1 import peer_service_pb2 as pb

log = structlog.get_logger(__name__)

BACKOFF_S = (1.0, 2.0, 4.0, 8.0)


class WorkerSession:
    """Keeps a worker's session with its head (see the module docstring)."""

    def __init__(self, manager: PeerManager, membership: Membership) -> None:
        self.manager, self.membership = manager, membership
        self.config = manager.config
        self.epoch = 0  # 0: the next hello is a rendezvous
        self.head_boot_id = ""
        self._last_ok = 0.0  # time.monotonic() of the last hello that succeeded
        self._failures = 0
        self._failing = False  # the last hello failed: a wake interrupts the next one and redials
        self._again = False  # the last failure asks for another hello at once (a rendezvous, a redial)
        self._wake = asyncio.Event()
        self._head_id = ""
        self.sync()

    def sync(self) -> None:
        """After pairing changed: a new (or no) head starts from a rendezvous, with no boot ID known."""
        head = self.membership.head()
        node_id = head.node_id if head else ""
        if node_id != self._head_id:
            self._head_id, self.epoch, self.head_boot_id = node_id, 0, ""

    def wake(self) -> None:
        """Redial at once if the head is not connected (netlink reported a link change; pairing changed)."""
        self._failures = 0
        self._wake.set()

    def check_epoch(self, epoch: int) -> None:
        """Refuses a part request from a session other than the current one."""
        if self.epoch == 0 or epoch != self.epoch:
            raise StaleEpoch(epoch, self.epoch)

    async def run(self) -> None:
        while True:
            delay = self.config.peer.heartbeat_s
            self._wake.clear()  # before the beat: a wake during it makes the next one come at once
            try:
                delay = await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("peer.heartbeat_error")
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def beat(self) -> float:
        """One hello (when paired as a worker); returns the seconds until the next one."""
        head = self.membership.head()
        if self.membership.role != "worker" or head is None:
            return 1.0
        current = self.manager.peer(head.node_id)
        if current is None:
            self.manager.sync()
            current = self.manager.peer(head.node_id)
            assert current is not None
        error = await self._hello(head.node_id, current)
        self._failing = error is not None
        if error is None:
            self._failures = 0
            return self.config.peer.heartbeat_s
        if self._again:
            self._again = False
            delay = 0.0
        else:
            delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        now = time.monotonic()
        connected = current.state is PeerState.CONNECTED
        if connected and now - self._last_ok <= self.config.peer.timeout_s:
            return min(delay, self.config.peer.heartbeat_s, self.config.peer.timeout_s / 6)  # a blip, perhaps
        state, message = error
        if connected:
            silent = now - self._last_ok
            message = f"no answer for {silent:.1f} s: {message}"
            self.epoch = 0
        await self.manager.drop_channel(head.node_id)  # redial afresh, not on a connection that may be dead
        if message != current.last_error or state is not current.state:
            log.warning("peer.hello_failed", head=head.name, error=message[:300])
        self.manager.set(dataclasses.replace(current, state=state, last_error=message[:500]), message[:200])
        self._failures += 1
        return delay

    async def _hello(self, head_id: str, current: PeerInfo) -> tuple[PeerState, str] | None:
        """One hello; None on success, else the state to show and why."""
        rendezvous = self.epoch == 0
        request = pb.HelloRequest(
            node=self.manager.own_hello(),
            deployments=self.manager.summaries(),
            epoch=self.epoch,
            rendezvous=rendezvous,
        )
        t0 = time.perf_counter()
        try:
            stub = await self.manager.stub(head_id)
            call = asyncio.ensure_future(stub.Hello(request, timeout=self.config.peer.timeout_s / 3))
            if self._failing and not await self._unless_woken(call):
                await self.manager.drop_channel(head_id)
                self._again = True
                return self._down_state(current), "redialling: the link changed"
            response = await call
            rtt = int((time.perf_counter() - t0) * 1e6)
            convert.check_hello(response.node)
            deployments = convert.summaries_from_proto(response.deployments)
        except SparkdError as e:
            return self._down_state(current), e.message
        except grpc.aio.AioRpcError as e:
            return self._rpc_failed(e, current)
        member = self.membership.head()
        node = response.node
        if member is None or node.node_id != member.node_id or node.index != 0:
            return PeerState.REFUSED, f"the head answered as {node.node_id} (index {node.index})"
        if node.protocol_max < PEER_PROTOCOL_MIN:
            return PeerState.REFUSED, f"the head speaks peer protocol up to {node.protocol_max}; upgrade it"
        if rendezvous:
            if response.epoch == 0:
                return PeerState.REFUSED, "the head answered a rendezvous without an epoch"
            if self.head_boot_id and node.boot_id != self.head_boot_id:
                self.manager.bus.publish("peer", member.name, "rebooted", f"boot ID {node.boot_id}")
            self.epoch, self.head_boot_id = response.epoch, node.boot_id
            log.info("peer.rendezvous", head=member.name, epoch=self.epoch)
        elif response.epoch != self.epoch or node.boot_id != self.head_boot_id:
            self.epoch = 0  # the head moved on: rendezvous at the next beat
            return self._down_state(current), "the head's epoch or boot ID changed; rendezvous again"
        self._last_ok = time.monotonic()
        self.manager.received(member, node, deployments, self.epoch, rtt)
        return None

    async def _unless_woken(self, call: asyncio.Future[pb.HelloResponse]) -> bool:
        """Waits for `call`; False (and `call` cancelled) if a wake came first: after failures, a link change
        means the connection the call waits on may be dead while a fresh one would get through."""
        woken: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        both: list[asyncio.Future[Any]] = [call, woken]
        try:
            done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        if call in done:
            return True
        call.cancel()
        return False

    def _rpc_failed(self, e: grpc.aio.AioRpcError, current: PeerInfo) -> tuple[PeerState, str]:
        details = str(e.details())[:400]
        message = f"{e.code().name}: {details}"
        if e.code() is grpc.StatusCode.FAILED_PRECONDITION:
            self.epoch = 0  # a stale session, or a refusal: rendezvous next (which says which it is)
            if "stale session" in details:
                self._again = True  # the head forgot this session: rendezvous at once
                return self._down_state(current), message
            return PeerState.REFUSED, message
        if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details.lower():
            self.manager.bus.publish("peer", current.name, "identity_changed", "the head's key is not the paired one")
            return PeerState.KEY_CHANGED, (
                f"{current.name} presented a key other than the one paired: refusing it; if the head was "
                "reinstalled, run `peer pair reset` here and pair again"
            )
        if e.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return PeerState.REFUSED, message
        return self._down_state(current), message

    @staticmethod
    def _down_state(current: PeerInfo) -> PeerState:
        return PeerState.DISCONNECTED if current.state is PeerState.CONNECTED else current.state


class StaleEpoch(PreconditionFailed):
    """A part request from a session other than the current one."""

    def __init__(self, got: int, current: int) -> None:
        super().__init__(
            f"stale epoch {got}: this worker's session with the head is epoch {current or 'none yet'}; "
            "the request is from an older session and is refused",
            epoch=str(got),
        )
