"""systemd over D-Bus (jeepney): transient units for deployments, and their state.

Why jeepney: it is pure Python (nothing to compile on an aarch64 Spark), small, has a
native asyncio router that fits grpc.aio, and builds D-Bus messages explicitly, so the
`StartTransientUnit` signature `ssa(sv)a(sa(sv))` is visible in the code rather than
hidden behind introspection. (dbus-fast, dbus-next and pystemd were also tried on these
machines; see docs/architecture.md.)

Units started here are transient and are NOT children of sparkd: restarting sparkd
never restarts them; sparkd re-adopts them by name.
"""

from __future__ import annotations

from typing import Any

from jeepney import DBusAddress, DBusErrorResponse, new_method_call
from jeepney.io.asyncio import DBusConnection, DBusRouter, RouterClosed, open_dbus_connection, unwrap_msg

from sparkd.errors import HostOperationFailed
from sparkd.model.unit import UnitSpec, UnitState

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name=_SYSTEMD, interface=f"{_SYSTEMD}.Manager")


def _properties(spec: UnitSpec) -> list[tuple[str, tuple[str, Any]]]:
    props: list[tuple[str, tuple[str, Any]]] = [
        ("Description", ("s", spec.description)),
        ("ExecStart", ("a(sasb)", [(spec.argv[0], list(spec.argv), False)])),
        ("Type", ("s", spec.service_type)),
        ("Restart", ("s", spec.restart)),
    ]
    if spec.environment:
        props.append(("Environment", ("as", [f"{k}={v}" for k, v in spec.environment.items()])))
    if spec.network_namespace_path:
        props.append(("NetworkNamespacePath", ("s", spec.network_namespace_path)))
    if spec.service_type == "notify":
        props.append(("NotifyAccess", ("s", "main")))
    if spec.working_directory:
        props.append(("WorkingDirectory", ("s", spec.working_directory)))
    return props


class DbusSystemd:
    """The system manager, over the D-Bus system bus (implements `protocols.Systemd`).

    One connection is opened on first use and kept (a D-Bus connection costs an auth handshake);
    it is reopened once if the bus dropped it (e.g. dbus restarted).
    """

    def __init__(self) -> None:
        self._router: DBusRouter | None = None
        self._connection: DBusConnection | None = None

    async def _get_router(self) -> DBusRouter:
        if self._router is None:
            self._connection = await open_dbus_connection(bus="SYSTEM")
            self._router = DBusRouter(self._connection)
        return self._router

    async def close(self) -> None:
        if self._router is not None and self._connection is not None:
            await self._router.__aexit__(None, None, None)
            await self._connection.close()
        self._router = self._connection = None

    async def _call(self, address: DBusAddress, method: str, signature: str, body: tuple[Any, ...]) -> Any:
        message = new_method_call(address, method, signature, body)
        for attempt in (1, 2):
            try:
                reply = await (await self._get_router()).send_and_get_reply(message)
                return unwrap_msg(reply)
            except (OSError, RouterClosed) as e:
                await self._drop()
                if attempt == 2:
                    raise HostOperationFailed(f"cannot reach systemd over D-Bus: {e}", method=method) from e
                message = new_method_call(address, method, signature, body)
            except DBusErrorResponse as e:
                raise HostOperationFailed(f"systemd {method} failed: {e.name}: {e.data}", method=method) from e
        raise AssertionError("unreachable")

    async def _drop(self) -> None:
        try:
            await self.close()
        except Exception:
            self._router = self._connection = None

    async def start(self, spec: UnitSpec) -> None:
        """Starts a transient service unit (fails if one of that name is loaded)."""
        await self._call(_MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (spec.name, "fail", _properties(spec), []))

    async def stop(self, name: str) -> None:
        """Stops a unit; a unit that is not loaded is already stopped."""
        state = await self.state(name)
        if state.load_state == "loaded" and state.active_state not in ("inactive", "failed"):
            await self._call(_MANAGER, "StopUnit", "ss", (name, "replace"))
        if state.active_state == "failed":
            await self._call(_MANAGER, "ResetFailedUnit", "s", (name,))

    async def state(self, name: str) -> UnitState:
        """The unit's state ("not-found"/"inactive" for a unit systemd does not know)."""
        return (await self.states([name]))[name]

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        """Load, active and sub state of many units in one ListUnitsByNames round trip (systemd loads the
        ones it does not know, answering "not-found").

        A unit whose start job is still queued (just after StartTransientUnit, on a busy machine) is
        "inactive" to systemd; it is reported "activating", which is what it is: not a failure.
        """
        if not names:
            return {}
        (units,) = await self._call(_MANAGER, "ListUnitsByNames", "as", (list(names),))
        result = {}
        for name, _, load, active, sub, _following, _path, job_id, job_type, _job in units:
            starting = active == "inactive" and job_id and job_type == "start"
            result[str(name)] = UnitState(str(name), str(load), "activating" if starting else str(active), str(sub))
        return result

    async def list_units(self, pattern: str) -> list[str]:
        """Names of the loaded units matching a glob `pattern` (e.g. "sparkd-demo-rank*.service")."""
        (units,) = await self._call(_MANAGER, "ListUnitsByPatterns", "asas", ([], [pattern]))
        return sorted(str(u[0]) for u in units)
