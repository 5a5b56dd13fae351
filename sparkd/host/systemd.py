"""systemd over D-Bus (jeepney): transient units for deployments, and their state.

Why jeepney: it is pure Python (nothing to compile on an aarch64 Spark), small, has a
native asyncio router that fits grpc.aio, and builds D-Bus messages explicitly, so the
`StartTransientUnit` signature `ssa(sv)a(sa(sv))` is visible in the code rather than
hidden behind introspection. (dbus-fast, dbus-next and pystemd were also tried on these
machines; see docs/architecture.md.)

Units started here are transient and are NOT children of sparkd: restarting sparkd
never restarts them; sparkd re-adopts them by name.

Types on the bus are systemd's org.freedesktop.systemd1(5): ListUnitsByNames returns
a(ssssssouso) (name, description, load, active, sub, following, unit object path, job id,
job type, job path); a service object's org.freedesktop.systemd1.Service interface has
MainPID u, Result s, ExecMainCode i, ExecMainStatus i, NRestarts u, ExecMainExitTimestamp t
(realtime microseconds, 0 when it has not exited), and TimeoutStopUSec t (microseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jeepney import DBusAddress, DBusErrorResponse, new_method_call
from jeepney.io.asyncio import DBusConnection, DBusRouter, RouterClosed, open_dbus_connection, unwrap_msg

from sparkd.errors import HostOperationFailed
from sparkd.model.unit import Sandbox, UnitSpec, UnitState, capability_mask, exec_command, rlimit_bytes

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name=_SYSTEMD, interface=f"{_SYSTEMD}.Manager")
_SERVICE = f"{_SYSTEMD}.Service"

#: How long `stop` waits for a unit to stop: a deployment rank's TimeoutStopSec= (30 s) and some.
STOP_WAIT_S = 40.0
#: The Service properties `states` reads, with their D-Bus types, and the UnitState field each fills.
SERVICE_PROPERTIES: dict[str, tuple[str, str]] = {
    "MainPID": ("u", "main_pid"),
    "Result": ("s", "result"),
    "ExecMainCode": ("i", "exec_main_code"),
    "ExecMainStatus": ("i", "exec_main_status"),
    "NRestarts": ("u", "n_restarts"),
    "ExecMainExitTimestamp": ("t", "exit_time"),
}
#: D-Bus value -> UnitState field value, by signature (a "t" here is a timestamp in microseconds).
_CONVERT: dict[str, Callable[[Any], Any]] = {"s": str, "u": int, "i": int, "t": lambda usec: int(usec) / 1e6}


#: Sandbox fields sent as plain D-Bus values: field -> (property, signature). The rest are built in
#: `_sandbox_properties` (RestrictNamespaces t, SystemCallFilter and RestrictAddressFamilies (bas),
#: SystemCallErrorNumber i, the capability masks t, DeviceAllow a(ss), UMask u).
_SANDBOX_PLAIN: dict[str, tuple[str, str]] = {
    "no_new_privileges": ("NoNewPrivileges", "b"),
    "protect_system": ("ProtectSystem", "s"),
    "protect_home": ("ProtectHome", "s"),
    "private_tmp": ("PrivateTmp", "b"),
    "private_devices": ("PrivateDevices", "b"),
    "private_network": ("PrivateNetwork", "b"),
    "private_mounts": ("PrivateMounts", "b"),
    "protect_kernel_tunables": ("ProtectKernelTunables", "b"),
    "protect_kernel_modules": ("ProtectKernelModules", "b"),
    "protect_kernel_logs": ("ProtectKernelLogs", "b"),
    "protect_control_groups": ("ProtectControlGroups", "b"),
    "protect_clock": ("ProtectClock", "b"),
    "protect_hostname": ("ProtectHostname", "b"),
    "restrict_realtime": ("RestrictRealtime", "b"),
    "restrict_suid_sgid": ("RestrictSUIDSGID", "b"),
    "lock_personality": ("LockPersonality", "b"),
    "memory_deny_write_execute": ("MemoryDenyWriteExecute", "b"),
    "remove_ipc": ("RemoveIPC", "b"),
    "protect_proc": ("ProtectProc", "s"),
    "system_call_architectures": ("SystemCallArchitectures", "as"),
    "device_policy": ("DevicePolicy", "s"),
    "read_write_paths": ("ReadWritePaths", "as"),
    "read_only_paths": ("ReadOnlyPaths", "as"),
    "inaccessible_paths": ("InaccessiblePaths", "as"),
}


def _literal(word: str) -> str:
    """systemd expands $NAME and ${NAME} in every word of an Exec command line, also one sent over D-Bus
    (systemd-run's own example writes "$$$$" for the shell's "$$"): "$$" keeps a "$"."""
    return word.replace("$", "$$")


def _command(path: str, argv: Sequence[str], ignore_failure: bool) -> tuple[str, list[str], bool]:
    """One a(sasb) entry: the executable, its argv (argv[0] included) and whether failure is ignored."""
    return path, [_literal(word) for word in argv], ignore_failure


def _sandbox_properties(sandbox: Sandbox) -> list[tuple[str, tuple[str, Any]]]:
    props: list[tuple[str, tuple[str, Any]]] = []
    for name, (prop, signature) in _SANDBOX_PLAIN.items():
        value = getattr(sandbox, name)
        if signature == "b" or value:  # every boolean, yes or no; strings and lists only when set
            props.append((prop, (signature, list(value) if signature == "as" else value)))
    if sandbox.restrict_namespaces:
        props.append(("RestrictNamespaces", ("t", 0)))  # the namespace kinds allowed: none
    if sandbox.system_call_filter:
        props.append(("SystemCallFilter", ("(bas)", (True, list(sandbox.system_call_filter)))))
    if sandbox.system_call_deny:  # after the allow list: removes from it, as a second line in a unit file
        props.append(("SystemCallFilter", ("(bas)", (False, list(sandbox.system_call_deny)))))
    if sandbox.system_call_error_number:
        props.append(("SystemCallErrorNumber", ("i", sandbox.system_call_error_number)))
    if sandbox.restrict_address_families:
        props.append(("RestrictAddressFamilies", ("(bas)", (True, list(sandbox.restrict_address_families)))))
    if sandbox.capability_bounding_set is not None:
        props.append(("CapabilityBoundingSet", ("t", capability_mask(sandbox.capability_bounding_set))))
    if sandbox.ambient_capabilities is not None:
        props.append(("AmbientCapabilities", ("t", capability_mask(sandbox.ambient_capabilities))))
    if sandbox.device_allow:
        props.append(("DeviceAllow", ("a(ss)", [tuple(entry) for entry in sandbox.device_allow])))
    if sandbox.umask is not None:
        props.append(("UMask", ("u", sandbox.umask)))
    return props


def transient_properties(spec: UnitSpec) -> list[tuple[str, tuple[str, Any]]]:
    """StartTransientUnit's a(sv) for `spec` (org.freedesktop.systemd1(5) gives each property's type)."""
    props: list[tuple[str, tuple[str, Any]]] = [
        ("Description", ("s", spec.description)),
        ("ExecStart", ("a(sasb)", [_command(spec.argv[0], spec.argv, False)])),
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
    if spec.timeout_stop_s > 0:
        props.append(("TimeoutStopUSec", ("t", round(spec.timeout_stop_s * 1_000_000))))
    for prop, commands in (("ExecStartPre", spec.exec_start_pre), ("ExecStopPost", spec.exec_stop_post)):
        if commands:
            props.append((prop, ("a(sasb)", [_command(*exec_command(c)) for c in commands])))
    if spec.user:
        props.append(("User", ("s", spec.user)))
    if spec.dynamic_user:
        props.append(("DynamicUser", ("b", True)))
    if spec.supplementary_groups:
        props.append(("SupplementaryGroups", ("as", list(spec.supplementary_groups))))
    if spec.limit_memlock:  # the hard limit, then the soft one (systemd-run sends both for LimitMEMLOCK=)
        limit = rlimit_bytes(spec.limit_memlock)
        props += [("LimitMEMLOCK", ("t", limit)), ("LimitMEMLOCKSoft", ("t", limit))]
    if spec.cache_directory:
        props.append(("CacheDirectory", ("as", list(spec.cache_directory))))
    if spec.state_directory:
        props.append(("StateDirectory", ("as", list(spec.state_directory))))
    if spec.joins_namespace_of:
        props.append(("JoinsNamespaceOf", ("as", list(spec.joins_namespace_of))))
    if spec.sandbox is not None:
        props += _sandbox_properties(spec.sandbox)
    return props


def unit_states(
    units: Sequence[Sequence[Any]], properties: Mapping[str, Mapping[str, tuple[str, Any]]]
) -> dict[str, UnitState]:
    """UnitStates from ListUnitsByNames' a(ssssssouso) tuples and, by unit name, the Service properties
    read for it (name -> (D-Bus signature, value), as jeepney gives a variant). A property that is
    missing or of another type than SERVICE_PROPERTIES says keeps its default.

    A unit whose start job is still queued (just after StartTransientUnit, on a busy machine) is
    "inactive" to systemd; it is reported "activating", which is what it is: not a failure.
    """
    result = {}
    for name, _, load, active, sub, _following, _path, job_id, job_type, _job in units:
        starting = active == "inactive" and job_id and job_type == "start"
        facts: dict[str, Any] = {}
        for prop, (signature, value) in properties.get(str(name), {}).items():
            expected = SERVICE_PROPERTIES.get(prop)
            if expected is not None and expected[0] == signature:
                facts[expected[1]] = _CONVERT[signature](value)
        result[str(name)] = UnitState(
            str(name), str(load), "activating" if starting else str(active), str(sub), **facts
        )
    return result


class DbusSystemd:
    """The system manager, over the D-Bus system bus (implements `protocols.Systemd`).

    One connection is opened on first use and kept (a D-Bus connection costs an auth handshake);
    it is reopened once if the bus dropped it (e.g. dbus restarted).
    """

    def __init__(self) -> None:
        self._router: DBusRouter | None = None
        self._connection: DBusConnection | None = None
        self._connecting = asyncio.Lock()  # concurrent calls (states' property reads) open one connection

    async def _get_router(self) -> DBusRouter:
        if self._router is not None:
            return self._router
        async with self._connecting:
            if self._router is None:
                self._connection = await open_dbus_connection(bus="SYSTEM")
                self._router = DBusRouter(self._connection)
            return self._router

    async def close(self) -> None:
        if self._router is not None and self._connection is not None:
            await self._router.__aexit__(None, None, None)
            await self._connection.close()
        self._router = self._connection = None

    async def _call(
        self, address: DBusAddress, method: str, signature: str, body: tuple[Any, ...], reconnect: bool = True
    ) -> Any:
        """One method call. A dropped bus is reopened and the call sent again once, unless `reconnect` is
        False (calls made concurrently: one of them failing must not tear the connection down under the
        others; the next call that reconnects does)."""
        message = new_method_call(address, method, signature, body)
        for attempt in (1, 2):
            try:
                reply = await (await self._get_router()).send_and_get_reply(message)
                return unwrap_msg(reply)
            except (OSError, RouterClosed) as e:
                if not reconnect:
                    raise HostOperationFailed(f"cannot reach systemd over D-Bus: {e}", method=method) from e
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
        await self._call(
            _MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (spec.name, "fail", transient_properties(spec), [])
        )

    async def stop(self, name: str, wait_s: float = STOP_WAIT_S) -> None:
        """Stops a unit and waits (at most `wait_s`) until it has; a unit that is not loaded is already
        stopped. One that ends failed (its process exited non-zero on its own while it was stopped: a rank
        whose peer went first) is reset, so that no unit stays behind."""
        state = unit_states(await self._list([name]), {})[name]
        if state.load_state == "loaded" and state.active_state not in ("inactive", "failed"):
            await self._call(_MANAGER, "StopUnit", "ss", (name, "replace"))
            deadline = asyncio.get_running_loop().time() + wait_s
            while state.active_state not in ("inactive", "failed") and state.load_state == "loaded":
                if asyncio.get_running_loop().time() > deadline:
                    return  # still stopping (its TimeoutStopSec= runs out later); the caller reads its state
                await asyncio.sleep(0.05)
                state = unit_states(await self._list([name]), {})[name]
        if state.active_state == "failed":
            await self._call(_MANAGER, "ResetFailedUnit", "s", (name,))

    async def state(self, name: str) -> UnitState:
        """The unit's state ("not-found"/"inactive" for a unit systemd does not know)."""
        return (await self.states([name]))[name]

    async def states(self, names: list[str]) -> dict[str, UnitState]:
        """Load, active and sub state of many units in one ListUnitsByNames round trip (systemd loads the
        ones it does not know, answering "not-found"), then each loaded service's SERVICE_PROPERTIES
        (see `unit_states`).

        The properties are one Properties.Get per property, all units' and all properties' calls in flight
        at once: one more round trip in all. Not GetAll: on the Service interface that makes systemd
        compute and send every property of the unit, cgroup accounting included (memory.current,
        pids.current, io and IP counters are read from cgroupfs at each call), some 300 of them, for 6. A
        unit whose properties cannot be read (it was unloaded meanwhile, the bus dropped) keeps the
        defaults; the probe itself does not fail for it.
        """
        if not names:
            return {}
        units = await self._list(names)
        paths = {str(u[0]): str(u[6]) for u in units if u[2] == "loaded" and str(u[0]).endswith(".service")}
        found = await asyncio.gather(*(self._service_properties(path) for path in paths.values()))
        return unit_states(units, dict(zip(paths, found, strict=True)))

    async def _list(self, names: list[str]) -> list[tuple[Any, ...]]:
        (units,) = await self._call(_MANAGER, "ListUnitsByNames", "as", (list(names),))
        return list(units)

    async def _service_properties(self, path: str) -> dict[str, tuple[str, Any]]:
        """The unit's SERVICE_PROPERTIES as (signature, value) variants; {} when any of them failed."""
        address = DBusAddress(path, bus_name=_SYSTEMD, interface="org.freedesktop.DBus.Properties")
        calls = (self._call(address, "Get", "ss", (_SERVICE, prop), reconnect=False) for prop in SERVICE_PROPERTIES)
        replies = await asyncio.gather(*calls, return_exceptions=True)
        found = {}
        for prop, reply in zip(SERVICE_PROPERTIES, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, Exception):
                    raise reply  # a cancellation is not a failed property
                return {}
            (found[prop],) = reply
        return found

    async def list_units(self, pattern: str) -> list[str]:
        """Names of the loaded units matching a glob `pattern` (e.g. "sparkd-demo-rank*.service")."""
        (units,) = await self._call(_MANAGER, "ListUnitsByPatterns", "asas", ([], [pattern]))
        return sorted(str(u[0]) for u in units)
