"""Finds interconnect setups sparkd did not make: netplan files and NetworkManager keyfiles on the twins.

Reads `/etc/netplan/*.yaml|*.yml` and `/etc/NetworkManager/system-connections/*.nmconnection`
(at most 64 files each, 64 KiB each; a symlink, FIFO or device is not read) and reports each
file that configures one of the given twin netdevs, or may: its static IPv4 addresses, DHCP,
link-local IPv4 and MTU per twin, the other interfaces it configures (then it cannot be
disabled as a whole) and what sparkd cannot read or take over (a bond or bridge over a
twin, a stanza matched by MAC address, a generic wired profile). A file that names only
other interfaces (the management NIC) is not reported. Nothing here raises for a bad file:
what is wrong with it is a problem of its `ForeignSetup`.

Limits, on purpose: netplan stanzas are matched by their key, `match: name` (a glob) and
`set-name`, never by MAC address or driver; keyfiles by `connection.interface-name` only
(`ethernet.mac-address` is not compared with the twins' addresses). Legacy keyfiles without
the `.nmconnection` suffix and the runtime directories (/run/netplan, /run/NetworkManager)
are not read. Blocking (file reads): callers run it in a thread.
"""

from __future__ import annotations

import configparser
import errno
import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from sparkd.errors import shown
from sparkd.files import NotARegularFile
from sparkd.host.protocols import Files
from sparkd.model.foreign import ForeignSetup

NETPLAN_DIR = "/etc/netplan"
NM_DIR = "/etc/NetworkManager/system-connections"
MAX_FILE_BYTES = 64 * 1024
MAX_FILES = 64  # per directory
MAX_DEPTH = 16  # YAML nesting; a netplan file needs about 7
STANDARD_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))
#: netplan sections whose keys are interface names (besides `ethernets`), and the key naming their members.
NETPLAN_DEVICES = {"bonds": "interfaces", "bridges": "interfaces", "vrfs": "interfaces", "vlans": "link"} | {
    section: "" for section in ("wifis", "tunnels", "modems", "nm-devices", "dummy-devices", "virtual-ethernets")
}
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "n", "0"})
_ADDRESS_KEY = re.compile(r"address(?:es)?(\d{0,4})")  # address1=, legacy addresses1=


def find_foreign(files: Files, netdevs: Sequence[str]) -> list[ForeignSetup]:
    """The netplan files and NetworkManager profiles that configure (or may configure) one of `netdevs`
    (pass every ConnectX netdev, not only the cabled twins), sorted by path."""
    twins = tuple(dict.fromkeys(netdevs))
    found: list[ForeignSetup] = []
    scans = ((NETPLAN_DIR, (".yaml", ".yml"), "netplan"), (NM_DIR, (".nmconnection",), "networkmanager"))
    for directory, suffixes, kind in scans:
        try:
            names = [n for n in files.list_dir(directory) if n.endswith(suffixes) and not n.startswith(".")]
        except OSError as e:
            found.append(ForeignSetup(directory, kind, problems=(f"cannot be listed ({_reason(e)}); check it",)))
            continue
        if len(names) > MAX_FILES:
            problem = f"holds {len(names)} files; sparkd read the first {MAX_FILES} only: remove the stale ones"
            found.append(ForeignSetup(directory, kind, problems=(problem,)))
        for name in names[:MAX_FILES]:
            path = f"{directory}/{name}"
            setup = _scan_file(files, path, kind, twins)
            if setup is not None:
                found.append(setup)
    return sorted(found, key=lambda s: s.path)


def _scan_file(files: Files, path: str, kind: str, twins: tuple[str, ...]) -> ForeignSetup | None:
    what = "netplan file" if kind == "netplan" else "keyfile"
    try:
        data = files.read_bounded(path, MAX_FILE_BYTES)
    except OSError as e:
        if e.errno == errno.ELOOP:
            problem = f"is a symbolic link, which sparkd does not follow: replace it with the {what} itself"
        elif isinstance(e, NotARegularFile):
            problem = "is not a regular file: sparkd reads only regular files here; move it away"
        else:
            problem = f"cannot be read ({_reason(e)})"
        return ForeignSetup(path, kind, problems=(problem,))
    if data is None:  # removed since the listing
        return None
    if len(data) > MAX_FILE_BYTES:
        problem = f"is larger than {MAX_FILE_BYTES // 1024} KiB and was not read: a {what} is a few lines; check it"
        return ForeignSetup(path, kind, problems=(problem,))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return ForeignSetup(path, kind, problems=(f"is not UTF-8 text (byte {e.start}); fix or remove it",))
    found = _Found(path, kind, twins)
    if kind == "netplan":
        _parse_netplan(text, found)
    else:
        _parse_keyfile(text, found)
    return found.setup()


class _Found:
    """What one file configures, collected while it is parsed."""

    def __init__(self, path: str, kind: str, twins: tuple[str, ...]) -> None:
        self.path, self.kind, self.twins = path, kind, twins
        self.netdevs: set[str] = set()
        self.addresses: list[tuple[str, ipaddress.IPv4Interface]] = []
        self.mtu: dict[str, int] = {}
        self.dhcp: set[str] = set()
        self.link_local: set[str] = set()
        self.others: list[str] = []
        self.problems: list[str] = []

    def other(self, name: str) -> None:
        if name not in self.others:
            self.others.append(name)

    def address(self, netdev: str, value: object, where: str) -> None:
        """One address entry ("a.b.c.d/n"); IPv6 is ignored, anything else is a problem."""
        try:
            if not isinstance(value, str) or "/" not in value:
                raise ValueError
            address = ipaddress.ip_interface(value.strip())
        except ValueError:
            self.problems.append(f"{where}: {shown(value)} is not an address with a prefix length (a.b.c.d/n)")
            return
        if isinstance(address, ipaddress.IPv4Interface) and (netdev, address) not in self.addresses:
            self.addresses.append((netdev, address))

    def set_mtu(self, netdev: str, value: object, where: str) -> None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 65535:
            self.problems.append(f"{where}: MTU {shown(value)} is not a number from 68 to 65535")
        elif self.mtu.setdefault(netdev, value) != value:
            self.problems.append(f"{where}: MTU {value} for {netdev} conflicts with MTU {self.mtu[netdev]}")

    def setup(self) -> ForeignSetup | None:
        """The file's `ForeignSetup`, or None when it neither configures a twin nor has a problem."""
        if not self.netdevs and not self.problems:
            return None
        order = [t for t in self.twins if t in self.netdevs]
        return ForeignSetup(
            path=self.path,
            kind=self.kind,
            netdevs=tuple(order),
            addresses=tuple(sorted(self.addresses, key=lambda a: order.index(a[0]))),
            mtu=tuple((n, self.mtu[n]) for n in order if n in self.mtu),
            dhcp=tuple(n for n in order if n in self.dhcp),
            link_local=tuple(n for n in order if n in self.link_local),
            other_interfaces=tuple(self.others),
            problems=tuple(dict.fromkeys(self.problems)),
        )


# --- netplan ---------------------------------------------------------------------------------------------


def _parse_netplan(text: str, found: _Found) -> None:
    doc = _load_yaml(text, found)
    if doc is None:
        return
    network = doc.get("network") if isinstance(doc, dict) else doc
    if network is None:
        return
    if not isinstance(network, dict):
        found.problems.append("is not a netplan document (no `network:` mapping); fix or remove it")
        return
    ethernets = network.get("ethernets")
    if isinstance(ethernets, dict):
        for key, stanza in ethernets.items():
            _netplan_ethernet(str(key), {} if stanza is None else stanza, found)
    elif ethernets is not None:
        found.problems.append("network.ethernets is not a mapping; fix the file (netplan refuses it too)")
    for section, members_key in NETPLAN_DEVICES.items():
        devices = network.get(section)
        if not isinstance(devices, dict):
            continue
        for key, stanza in devices.items():
            name = str(key)
            if name in found.twins:
                found.netdevs.add(name)
                found.problems.append(f"network.{section} defines {name}, a twin: sparkd cannot take that over")
            else:
                found.other(name)
            members = stanza.get(members_key) if isinstance(stanza, dict) and members_key else None
            for member in [members] if isinstance(members, str) else members if isinstance(members, list) else []:
                if member in found.twins:
                    found.netdevs.add(member)
                    found.problems.append(
                        f"network.{section}.{name} runs over the twin {member}: sparkd cannot take that over; "
                        f"take {member} out of it by hand"
                    )


def _netplan_ethernet(key: str, stanza: object, found: _Found) -> None:
    where = f"network.ethernets.{key}"
    if not isinstance(stanza, dict):
        if key in found.twins:
            found.netdevs.add(key)
            found.problems.append(f"{where} is not a mapping; fix the file (netplan refuses it too)")
        return
    matched = _netplan_match(key, stanza, found)
    for netdev in matched:
        found.netdevs.add(netdev)
        addresses = stanza.get("addresses")
        if isinstance(addresses, list):
            for entry in addresses:  # "a.b.c.d/n", or {"a.b.c.d/n": {lifetime: ..., label: ...}}
                value = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else entry
                found.address(netdev, value, f"{where}.addresses")
        elif addresses is not None:
            found.problems.append(f"{where}.addresses is not a list")
        if _yaml_bool(stanza.get("dhcp4")):
            found.dhcp.add(netdev)
        link_local = stanza.get("link-local")
        if isinstance(link_local, list):
            if "ipv4" in link_local:
                found.link_local.add(netdev)
        elif link_local is not None:
            found.problems.append(f"{where}.link-local is not a list")
        if "mtu" in stanza:
            found.set_mtu(netdev, stanza["mtu"], where)


def _netplan_match(key: str, stanza: dict[Any, Any], found: _Found) -> list[str]:
    """The twins an `ethernets` stanza configures: its key, or its `match: name` glob and `set-name`."""
    where = f"network.ethernets.{key}"
    match = stanza.get("match")
    if match is None:
        if key in found.twins:
            return [key]
        found.other(key)
        return []
    if not isinstance(match, dict):
        found.problems.append(f"{where}.match is not a mapping; fix the file (netplan refuses it too)")
        return []
    name, set_name = match.get("name"), stanza.get("set-name")
    hits: list[str] = []
    if isinstance(name, str):
        hits = [t for t in found.twins if fnmatch.fnmatchcase(t, name)]
        if not hits or any(c in name for c in "*?["):  # a pattern may match more than the twins
            found.other(name)
    else:
        by = ", ".join(sorted(str(k) for k in match)) or "nothing (every ethernet device)"
        found.problems.append(
            f"{where} matches by {by}, which sparkd does not resolve: it may configure a twin; match it by name instead"
        )
    if isinstance(set_name, str):
        if set_name in found.twins and set_name not in hits:
            hits.append(set_name)
        elif hits and set_name not in found.twins:
            found.problems.append(f"{where} renames {', '.join(hits)} to {shown(set_name)}: remove its set-name")
    return hits


def _load_yaml(text: str, found: _Found) -> object:
    """The document, or None (with a problem) when it is not plain, bounded YAML (see `_check_events`)."""
    import yaml  # loaded only when a netplan file is read, as `spec_yaml` does

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        problem = _check_events(yaml.parse(text, Loader=loader))
        if problem:
            found.problems.append(problem)
            return None
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        detail = getattr(e, "problem", None) or str(e)
        found.problems.append(f"is not valid YAML{where} ({shown(detail, 120)}): fix it (netplan refuses it too)")
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        found.problems.append(f"cannot be loaded as YAML ({type(e).__name__}); fix or remove it")
    return None


def _check_events(events: Any) -> str:
    """What makes a document unsafe to build ("" when nothing): an alias or anchor (an alias bomb), a
    non-standard tag, nesting deeper than MAX_DEPTH, a second document."""
    import yaml

    depth = documents = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            return "uses YAML anchors or aliases, which sparkd does not read: write the values out"
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in STANDARD_TAGS:
            return f"uses the YAML tag {shown(tag)}, which sparkd does not read: remove it"
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels: not a netplan file sparkd reads"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                return "holds more than one YAML document: netplan reads one; split or fix it"
    return ""


def _yaml_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return value is True


# --- NetworkManager keyfiles -----------------------------------------------------------------------------


def _parse_keyfile(text: str, found: _Found) -> None:
    # No [DEFAULT] magic: "\n" can never be a section name (a header is one line).
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, delimiters=("=",), comment_prefixes=("#",), default_section="\n"
    )
    try:
        parser.read_string(text, source=found.path)
    except configparser.Error as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        found.problems.append(f"is not a keyfile ({shown(first, 120)}): fix or remove it")
        return

    def get(section: str, key: str) -> str:
        for name in (section, *(["802-3-ethernet"] if section == "ethernet" else [])):
            if parser.has_option(name, key):
                return parser.get(name, key).strip()
        return ""

    kind = get("connection", "type")
    kind = "ethernet" if kind == "802-3-ethernet" else kind
    ifname = get("connection", "interface-name")
    parent = get("vlan", "parent")
    if parent in found.twins:
        found.netdevs.add(parent)
        found.problems.append(f"is a VLAN over the twin {parent}: sparkd cannot take that over; remove it by hand")
    if not ifname:
        if kind == "ethernet" and get("connection", "autoconnect").lower() not in FALSE_WORDS:
            method = get("ipv4", "method") or "auto"
            notes = f"no interface-name, ipv4.method {shown(method)}"
            if get("ethernet", "mac-address"):
                notes += f", mac-address {shown(get('ethernet', 'mac-address'))} (not compared)"
            if parser.has_section("match"):
                notes += ", [match] rules (not evaluated)"
            found.problems.append(
                f"is a generic wired profile ({notes}): NetworkManager may bind it to a twin; "
                "give it an interface-name or set autoconnect=false"
            )
        return
    if ifname not in found.twins:
        return
    found.netdevs.add(ifname)
    controller = get("connection", "controller") or get("connection", "master")
    if controller:
        found.problems.append(
            f"makes {ifname} a port of {shown(controller)}: sparkd cannot take that over; remove it by hand"
        )
    if kind != "ethernet":
        found.problems.append(f"is a {shown(kind)} profile, not an ethernet one: sparkd cannot take it over")
    _keyfile_ipv4(parser, ifname, found)
    mtu = get("ethernet", "mtu")
    if mtu and mtu != "0":  # 0: the device's own
        found.set_mtu(ifname, mtu, "ethernet.mtu")


def _keyfile_ipv4(parser: configparser.ConfigParser, netdev: str, found: _Found) -> None:
    section = dict(parser["ipv4"]) if parser.has_section("ipv4") else {}
    method = section.get("method", "auto").strip()  # NetworkManager's default for ethernet
    if method == "auto":
        found.dhcp.add(netdev)
    elif method == "link-local":
        found.link_local.add(netdev)
    elif method not in ("manual", "disabled"):
        found.problems.append(f"ipv4.method {shown(method)} on {netdev}: sparkd cannot take that over")
    if section.get("link-local", "").strip() in ("3", "enabled"):
        found.link_local.add(netdev)
    if method == "disabled":
        return
    numbered = []
    for key, value in section.items():
        m = _ADDRESS_KEY.fullmatch(key)
        if m is not None:
            numbered.append((int(m.group(1) or 0), key, value))
    for _, key, value in sorted(numbered):
        found.address(netdev, value.split(",", 1)[0], f"ipv4.{key}")


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__
