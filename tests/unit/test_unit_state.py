"""What systemd says about a unit: exit descriptions, the D-Bus replies turned into UnitStates (without a bus),
the transient properties, and the fake's supervision facts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from jeepney import new_method_call
from jeepney.low_level import Message

from sparkd.errors import HostOperationFailed
from sparkd.host.systemd import _MANAGER, DbusSystemd, transient_properties, unit_states
from sparkd.model.unit import (
    CLD_DUMPED,
    CLD_EXITED,
    CLD_KILLED,
    Sandbox,
    UnitSpec,
    UnitState,
    capability_mask,
    rlimit_bytes,
)
from tests.fakes.host import FakeSystemd

UNIT = "sparkd-demo-rank0.service"


def state(code: int = 0, status: int = 0, result: str = "") -> UnitState:
    return UnitState(UNIT, "loaded", "failed", "failed", result=result, exec_main_code=code, exec_main_status=status)


@pytest.mark.parametrize(
    ("code", "status", "result", "text"),
    [
        (CLD_EXITED, 1, "exit-code", "exited with status 1"),
        (CLD_EXITED, 0, "success", "exited with status 0"),
        (CLD_EXITED, 203, "exit-code", "exited with status 203"),
        (CLD_KILLED, 9, "signal", "killed by signal 9 (SIGKILL)"),
        (CLD_KILLED, 15, "success", "killed by signal 15 (SIGTERM)"),  # a stop's SIGTERM is a clean end
        (CLD_KILLED, 40, "signal", "killed by signal 40"),  # a real-time signal has no name
        (CLD_DUMPED, 6, "core-dump", "dumped core (signal 6, SIGABRT)"),
        (CLD_DUMPED, 11, "core-dump", "dumped core (signal 11, SIGSEGV)"),
        (CLD_DUMPED, 40, "core-dump", "dumped core (signal 40)"),
        # systemd's Result is added where it says more than the code does.
        (CLD_KILLED, 9, "oom-kill", "killed by signal 9 (SIGKILL), result 'oom-kill'"),
        (CLD_KILLED, 9, "timeout", "killed by signal 9 (SIGKILL), result 'timeout'"),
        (CLD_EXITED, 1, "watchdog", "exited with status 1, result 'watchdog'"),
        (CLD_EXITED, 1, "", "exited with status 1"),  # the Result could not be read
        # No exit recorded, but a failure.
        (0, 0, "start-limit-hit", "failed with result 'start-limit-hit'"),
        (0, 0, "resources", "failed with result 'resources'"),
        # Nothing known.
        (0, 0, "success", ""),
        (0, 0, "", ""),
    ],
)
def test_exit_description(code: int, status: int, result: str, text: str) -> None:
    assert state(code, status, result).exit_description == text


def test_unit_states_keep_their_old_shape_by_default() -> None:
    s = UnitState(UNIT, "loaded", "active", "running")
    assert (s.main_pid, s.result, s.exec_main_code, s.exec_main_status, s.n_restarts, s.exit_time) == (
        0,
        "",
        0,
        0,
        0,
        0,
    )
    assert s.exit_description == "" and s.running
    assert UnitState.unknown(UNIT).exit_description == ""


def listed(name: str, load: str = "loaded", active: str = "active", sub: str = "running", job: str = "") -> tuple:  # type: ignore[type-arg]
    """One ListUnitsByNames a(ssssssouso) tuple."""
    path = "/org/freedesktop/systemd1/unit/" + name.replace("-", "_2d").replace(".", "_2e")
    job_id, job_path = (7, "/org/freedesktop/systemd1/job/7") if job else (0, "/")
    return (name, "a unit", load, active, sub, "", path, job_id, job, job_path)


FAILED_PROPS = {
    "MainPID": ("u", 0),
    "Result": ("s", "signal"),
    "ExecMainCode": ("i", CLD_KILLED),
    "ExecMainStatus": ("i", 9),
    "NRestarts": ("u", 2),
    "ExecMainExitTimestamp": ("t", 1_700_000_123_456_789),
}


def test_unit_states_from_the_bus_replies() -> None:
    units = [
        listed("a.service", active="failed", sub="failed"),
        listed("b.service", active="inactive", sub="dead", job="start"),  # start job queued
        listed("c.service", load="not-found", active="inactive", sub="dead"),
        listed("d.service"),
    ]
    props = {
        "a.service": FAILED_PROPS,
        "d.service": {
            "MainPID": ("u", 4242),
            "Result": ("s", "success"),
            "NRestarts": ("i", 5),  # not the documented type: ignored
            "Bogus": ("s", "x"),  # not asked for: ignored
        },
    }
    states = unit_states(units, props)
    assert states["a.service"] == UnitState(
        "a.service", "loaded", "failed", "failed", 0, "signal", CLD_KILLED, 9, 2, 1_700_000_123.456789
    )
    assert states["a.service"].exit_description == "killed by signal 9 (SIGKILL)"
    assert states["b.service"] == UnitState("b.service", "loaded", "activating", "dead")
    assert states["c.service"] == UnitState("c.service", "not-found", "inactive", "dead")
    assert states["d.service"] == UnitState("d.service", "loaded", "active", "running", main_pid=4242, result="success")


class ScriptedBus(DbusSystemd):
    """DbusSystemd with `_call` answered from a table: what it is asked, and in which order, is recorded."""

    def __init__(self, units: list[tuple], props: dict[str, dict[str, tuple[str, Any]]]) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.units, self.props = units, props
        self.asked: list[tuple[str, str, tuple[Any, ...], bool]] = []
        self.failing: set[str] = set()  # object paths whose Get fails
        self.in_flight = self.most_in_flight = 0

    async def _call(
        self, address: Any, method: str, signature: str, body: tuple[Any, ...], reconnect: bool = True
    ) -> Any:
        self.asked.append((address.object_path, method, body, reconnect))
        if method == "ListUnitsByNames":
            return ([u for u in self.units if u[0] in body[0]],)
        assert method == "Get" and address.interface == "org.freedesktop.DBus.Properties"
        assert body[0] == "org.freedesktop.systemd1.Service"
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if address.object_path in self.failing:
            raise HostOperationFailed("systemd Get failed: org.freedesktop.DBus.Error.UnknownObject")
        name = next(str(u[0]) for u in self.units if u[6] == address.object_path)
        return (self.props[name][body[1]],)


def test_states_reads_the_service_properties_of_loaded_services_only_concurrently() -> None:
    units = [
        listed("a.service", active="failed", sub="failed"),
        listed("c.service", load="not-found", active="inactive", sub="dead"),
        listed("e.service"),
    ]
    running = {**FAILED_PROPS, "MainPID": ("u", 77), "Result": ("s", "success"), "ExecMainCode": ("i", 0)}
    bus = ScriptedBus(units, {"a.service": FAILED_PROPS, "e.service": running})
    bus.failing = {units[2][6]}  # e.service was unloaded between the two calls
    states = asyncio.run(bus.states(["a.service", "c.service", "e.service"]))
    assert states["a.service"].exec_main_status == 9 and states["a.service"].n_restarts == 2
    assert states["c.service"] == UnitState("c.service", "not-found", "inactive", "dead")
    assert states["e.service"] == UnitState("e.service", "loaded", "active", "running")  # defaults, no failure
    gets = [a for a in bus.asked if a[1] == "Get"]
    assert {a[0] for a in gets} == {units[0][6], units[2][6]}  # not the not-found unit
    assert len(gets) == 2 * 6 and not any(a[3] for a in gets)  # 6 properties each; never reconnecting
    assert bus.most_in_flight == 12  # all at once: one round trip
    assert bus.asked[0][1] == "ListUnitsByNames"


def test_stop_reads_no_service_properties() -> None:
    bus = ScriptedBus([listed("a.service", load="not-found", active="inactive", sub="dead")], {})
    asyncio.run(bus.stop("a.service"))
    assert [a[1] for a in bus.asked] == ["ListUnitsByNames"]


def test_timeout_stop_is_a_transient_property_in_microseconds() -> None:
    spec = UnitSpec(UNIT, ["/bin/true"], "demo")
    assert "TimeoutStopUSec" not in dict(transient_properties(spec))
    props = dict(transient_properties(UnitSpec(UNIT, ["/bin/true"], "demo", timeout_stop_s=2.5)))
    assert props["TimeoutStopUSec"] == ("t", 2_500_000)


def test_fake_systemd_gives_each_start_a_new_pid_and_records_how_it_ended() -> None:
    async def go() -> None:
        systemd = FakeSystemd()
        spec = UnitSpec(UNIT, ["/bin/vllm"], "demo")
        await systemd.start(spec)
        first = await systemd.state(UNIT)
        assert first.main_pid > 0 and first.result == "success" and first.exit_description == ""
        systemd.crash(UNIT, status=3)
        crashed = (await systemd.states([UNIT]))[UNIT]
        assert (crashed.active_state, crashed.sub_state, crashed.main_pid) == ("failed", "failed", 0)
        assert crashed.exit_description == "exited with status 3" and crashed.exit_time > 0
        assert [line.message for line in await systemd.journal.tail(UNIT, 10)] == [
            f"{UNIT}: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
            f"{UNIT}: Failed with result 'exit-code'.",
        ]
        await systemd.start(spec)  # a failed unit can be started again: a new process
        second = await systemd.state(UNIT)
        assert second.main_pid > first.main_pid and second.exit_description == ""
        assert systemd.units[UNIT].invocations == 2
        systemd.kill(UNIT, 9)
        assert (await systemd.state(UNIT)).exit_description == "killed by signal 9 (SIGKILL)"
        systemd.auto_restart(UNIT)
        restarted = await systemd.state(UNIT)
        assert restarted.running and restarted.n_restarts == 1 and restarted.main_pid > second.main_pid
        assert restarted.exit_description == "" and restarted.exit_time == 0
        systemd.kill(UNIT, 6, core=True)
        dumped = await systemd.state(UNIT)
        assert dumped.result == "core-dump" and dumped.exit_description == "dumped core (signal 6, SIGABRT)"
        assert (await systemd.journal.tail(UNIT, 2))[0].message.endswith("code=dumped, status=6/ABRT")

    asyncio.run(go())


#: Every property a sandboxed native rank sends, with the type org.freedesktop.systemd1(5) gives it.
SANDBOXED_SIGNATURES = {
    "Description": "s", "ExecStart": "a(sasb)", "Type": "s", "Restart": "s", "Environment": "as",
    "TimeoutStopUSec": "t", "ExecStartPre": "a(sasb)", "ExecStopPost": "a(sasb)", "User": "s",
    "DynamicUser": "b", "SupplementaryGroups": "as", "LimitMEMLOCK": "t", "LimitMEMLOCKSoft": "t",
    "CacheDirectory": "as", "JoinsNamespaceOf": "as", "NoNewPrivileges": "b", "ProtectSystem": "s",
    "ProtectHome": "s", "PrivateTmp": "b", "PrivateDevices": "b", "PrivateNetwork": "b", "PrivateMounts": "b",
    "ProtectKernelTunables": "b", "ProtectKernelModules": "b", "ProtectKernelLogs": "b",
    "ProtectControlGroups": "b", "ProtectClock": "b", "ProtectHostname": "b", "RestrictRealtime": "b",
    "RestrictSUIDSGID": "b", "LockPersonality": "b", "MemoryDenyWriteExecute": "b", "RemoveIPC": "b",
    "ProtectProc": "s", "SystemCallArchitectures": "as", "DevicePolicy": "s", "InaccessiblePaths": "as",
    "RestrictNamespaces": "t", "SystemCallFilter": "(bas)", "SystemCallErrorNumber": "i",
    "RestrictAddressFamilies": "(bas)", "CapabilityBoundingSet": "t", "AmbientCapabilities": "t",
    "DeviceAllow": "a(ss)", "UMask": "u",
}  # fmt: skip


def sandboxed(container: bool = False) -> UnitSpec:
    from sparkd.config import FrameworksConfig
    from sparkd.engine.sandbox import apply_sandbox, unit_sandbox

    remove = ("-/usr/bin/docker", "rm", "--force", "sparkd-demo-rank0")
    spec = UnitSpec(UNIT, ["/opt/vllm/bin/vllm", "serve"], "demo", {"A": "1"}, timeout_stop_s=30)
    spec = dataclasses.replace(spec, exec_start_pre=(remove,), exec_stop_post=(remove,))
    fields = unit_sandbox(FrameworksConfig(groups=("video",)), "demo", container)
    return apply_sandbox(spec, fields, siblings=(UNIT, "sparkd-demo-rank0-ray.service"))


def test_a_sandboxed_unit_reaches_dbus_with_systemds_types() -> None:
    props = transient_properties(sandboxed())
    assert {name: signature for name, (signature, _) in props} == SANDBOXED_SIGNATURES
    assert [name for name, _ in props].count("SystemCallFilter") == 2  # the allow list, then the deny list
    got = dict(props)
    assert got["User"] == ("s", "sparkd-demo") and got["DynamicUser"] == ("b", True)
    assert got["SupplementaryGroups"] == ("as", ["video"])
    assert got["LimitMEMLOCK"] == got["LimitMEMLOCKSoft"] == ("t", 2**64 - 1)  # infinity, soft and hard
    assert got["CacheDirectory"] == ("as", ["sparkd/demo"])
    assert got["JoinsNamespaceOf"] == ("as", ["sparkd-demo-rank0-ray.service"])  # not itself
    assert got["RestrictNamespaces"] == ("t", 0)  # no namespace kind allowed
    assert got["CapabilityBoundingSet"] == got["AmbientCapabilities"] == ("t", 0)
    assert got["PrivateDevices"] == got["MemoryDenyWriteExecute"] == ("b", False)  # the GPU, the JITs
    assert got["DevicePolicy"] == ("s", "closed")
    assert ("char-nvidia*", "rw") in got["DeviceAllow"][1]
    assert got["UMask"] == ("u", 0o077) and got["SystemCallErrorNumber"] == ("i", 1)  # EPERM
    filters = [value for name, value in props if name == "SystemCallFilter"]
    assert filters == [("(bas)", (True, ["@system-service", "pidfd_getfd"])), ("(bas)", (False, ["@privileged"]))]
    assert got["RestrictAddressFamilies"] == ("(bas)", (True, ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]))
    assert got["Environment"][1][:2] == ["HOME=/var/cache/sparkd/demo", "XDG_CACHE_HOME=/var/cache/sparkd/demo"]
    remove = ("/usr/bin/docker", ["/usr/bin/docker", "rm", "--force", "sparkd-demo-rank0"], True)  # "-": ignore
    assert got["ExecStartPre"] == got["ExecStopPost"] == ("a(sasb)", [remove])


def test_the_whole_start_message_serialises_and_reads_back() -> None:
    """jeepney checks every value against its signature while writing the message."""
    for spec in (sandboxed(), sandboxed(container=True)):
        body: tuple[Any, ...] = (spec.name, "fail", transient_properties(spec), [])
        message = new_method_call(_MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", body)
        back = Message.from_buffer(message.serialise(serial=1)).body
        assert back[0] == spec.name and len(back[2]) == len(body[2])
        for (name, (signature, value)), (name2, (signature2, value2)) in zip(body[2], back[2], strict=True):
            assert (name, signature) == (name2, signature2)
            assert json.dumps(value) == json.dumps(value2)  # tuples read back as lists


def test_a_container_cli_gets_the_docker_group_and_no_device_nor_network() -> None:
    got = dict(transient_properties(sandboxed(container=True)))
    assert got["SupplementaryGroups"] == ("as", ["video", "docker"])
    assert got["PrivateDevices"] == got["PrivateNetwork"] == got["MemoryDenyWriteExecute"] == ("b", True)
    assert got["RestrictAddressFamilies"] == ("(bas)", (True, ["AF_UNIX"]))
    assert "LimitMEMLOCK" not in got and "DeviceAllow" not in got


def test_an_unsandboxed_unit_sends_only_what_it_did_before() -> None:
    names = [name for name, _ in transient_properties(UnitSpec(UNIT, ["/bin/true"], "demo", {"A": "1"}))]
    assert names == ["Description", "ExecStart", "Type", "Restart", "Environment"]


def test_exec_arguments_are_literal_for_systemds_variable_expansion() -> None:
    spec = UnitSpec(UNIT, ["/bin/sh", "-c", "echo $HOME ${A} $$"], "demo")
    (_, (_, [(path, argv, ignore)])) = transient_properties(spec)[1]
    assert (path, argv, ignore) == ("/bin/sh", ["/bin/sh", "-c", "echo $$HOME $${A} $$$$"], False)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"exec_start_pre": (("docker", "rm"),)}, "absolute path"),
        ({"exec_stop_post": (("-", "/usr/bin/docker"),)}, "absolute path"),
        ({"exec_stop_post": ((),)}, "at least its executable"),
        ({"limit_memlock": "lots"}, "'infinity' or bytes"),
        ({"cache_directory": ("/var/cache/x",)}, "relative"),
        ({"cache_directory": ("sparkd/../..",)}, "relative"),
    ],
)
def test_unit_specs_refuse_what_systemd_would(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        UnitSpec(UNIT, ["/bin/true"], "demo", **kwargs)


def test_limits_and_capabilities_in_systemds_units() -> None:
    assert [rlimit_bytes(v) for v in ("infinity", "64M", "8k", "1024")] == [2**64 - 1, 64 << 20, 8192, 1024]
    assert capability_mask(["CAP_IPC_LOCK", "CAP_NET_RAW"]) == (1 << 14) | (1 << 13)
    with pytest.raises(ValueError, match="unknown capabilities"):
        Sandbox(capability_bounding_set=("CAP_EVERYTHING",))


def test_fake_systemd_keeps_what_it_was_given() -> None:
    systemd = FakeSystemd()
    spec = sandboxed()
    asyncio.run(systemd.start(spec))
    assert systemd.started == [spec] and systemd.units[UNIT].spec.user == "sparkd-demo"
    assert systemd.bus_properties(UNIT)["DynamicUser"] == ("b", True)
