"""The small host files sparkd writes besides /etc/nccl.conf, rendered as bytes or text.

- `/etc/profile.d/sparkd-nccl.sh`: the NCCL settings for login shells, the same as /etc/nccl.conf.
- `/etc/hosts`: sparkd owns one managed block between two marker lines and never touches any other
  line; removing the block gives back the file as it was before sparkd added it, byte for byte.
- `/etc/NetworkManager/conf.d/90-sparkd-interconnect.conf`: the twins unmanaged, so that NetworkManager
  (DGX OS runs it) never fights sparkd for them (NetworkManager.conf(5), `keyfile.unmanaged-devices`).
- `/etc/modules-load.d/sparkd.conf`: kernel modules loaded at boot (modules-load.d(5)).

Every renderer validates what it writes and raises ValueError for what the file's reader would misread.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

PROFILE = "/etc/profile.d/sparkd-nccl.sh"
HOSTS = "/etc/hosts"
NM_UNMANAGED = "/etc/NetworkManager/conf.d/90-sparkd-interconnect.conf"
MODULES_LOAD = "/etc/modules-load.d/sparkd.conf"

PROFILE_HEADER = (
    "# Managed by sparkd: rewritten on every host apply. The NCCL settings of /etc/nccl.conf, for login shells.\n"
)
NM_HEADER = (
    "# Managed by sparkd: rewritten on every host apply. NetworkManager leaves the interconnect twins to sparkd.\n"
)
MODULES_HEADER = "# Managed by sparkd: rewritten on every host apply. Kernel modules the interconnect needs.\n"

#: The managed block's marker lines in /etc/hosts. A line is a marker when it starts with the
#: prefix, so that an edited marker is still found instead of a second block being added.
HOSTS_BEGIN = "# BEGIN sparkd managed block: do not edit, `sparkctl-client host apply` rewrites it"
HOSTS_END = "# END sparkd managed block"
_BEGIN_PREFIX = "# BEGIN sparkd managed block"
_END_PREFIX = "# END sparkd managed block"

_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A host name label (RFC 1123 §2.1): letters, digits and `-`, not at either end, 1..63 characters.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A netdev name (IFNAMSIZ 16) as the kernel makes them; also free of NetworkManager's `,;\` and globs.
_NETDEV = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# A module name (MODULE_NAME_LEN 56, with its NUL): modprobe reads `-` and `_` as the same character.
_MODULE = re.compile(r"[A-Za-z0-9_-]{1,55}")


def _shell_quote(value: str) -> str:
    """`value` in single quotes for POSIX sh: a `'` inside becomes `'"'"'`."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def render_profile(env: Mapping[str, str]) -> bytes:
    """The contents of /etc/profile.d/sparkd-nccl.sh: `export NAME='value'` per setting, POSIX sh."""
    lines = [PROFILE_HEADER]
    for name, value in env.items():
        if not _SHELL_NAME.fullmatch(name):
            raise ValueError(
                f"not a shell variable name: {name!r} (letters, digits and `_`, not starting with a digit)"
            )
        if not all(" " <= c <= "~" for c in value):
            raise ValueError(f"the value of {name} has a character that is not printable ASCII: {value!r}")
        lines.append(f"export {name}={_shell_quote(value)}\n")
    return "".join(lines).encode()


def check_host_entry(address: str, name: str) -> None:
    """Raises ValueError unless `address` is IPv4 address text and `name` an RFC 1123 host name."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"not an IPv4 address for /etc/hosts: {address!r}") from None
    if str(parsed) != address:
        raise ValueError(f"write the IPv4 address {address!r} as {parsed} in /etc/hosts")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(
            f"not a host name for /etc/hosts: {name!r} (dot-separated labels of letters, digits and `-`, "
            "1..63 characters each, `-` not at either end, 253 characters in all)"
        )


def render_hosts_block(entries: Sequence[tuple[str, str]]) -> str:
    """The managed block for `entries`, one `address name` line each, its END line ending in a newline."""
    seen: dict[str, str] = {}
    lines = [HOSTS_BEGIN + "\n"]
    for address, name in entries:
        check_host_entry(address, name)
        key = name.lower()
        if key in seen:
            raise ValueError(f"host name {name} is listed twice for /etc/hosts ({seen[key]} and {address})")
        seen[key] = address
        lines.append(f"{address} {name}\n")
    lines.append(HOSTS_END + "\n")
    return "".join(lines)


def _lines(text: str) -> list[str]:
    """`text` cut after each `\\n` only (each line keeps its ending; a CR stays part of its line)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def find_hosts_block(text: str) -> tuple[int, int] | None:
    """The line indexes (BEGIN, END) of the managed block in `text`, or None when it has none.

    Raises ValueError for two or more blocks, a BEGIN without END or an END without BEGIN: the operator
    fixes the file by hand, sparkd never guesses which lines are its own."""
    lines = _lines(text)
    begins = [i for i, line in enumerate(lines) if line.startswith(_BEGIN_PREFIX)]
    ends = [i for i, line in enumerate(lines) if line.startswith(_END_PREFIX)]
    if not begins and not ends:
        return None
    where = f"/etc/hosts has {len(begins)} `{_BEGIN_PREFIX}` and {len(ends)} `{_END_PREFIX}` lines"
    if len(begins) != 1 or len(ends) != 1:
        raise ValueError(
            f"{where} (lines {', '.join(str(i + 1) for i in sorted(begins + ends))}): keep one block "
            "or none, by hand, then apply again"
        )
    if ends[0] < begins[0]:
        raise ValueError(
            f"{where}, END (line {ends[0] + 1}) before BEGIN (line {begins[0] + 1}): fix it by hand, then apply again"
        )
    return begins[0], ends[0]


def merge_hosts(existing: str | None, entries: Sequence[tuple[str, str]]) -> str:
    """/etc/hosts with the managed block set to `entries` (removed when `entries` is empty).

    The block is replaced where it is, or appended at the end; no other line changes. When the file
    does not end with a newline, sparkd appends a newline and then the block with no newline after its
    END line, so that removing the block gives back the original bytes. `existing` None (no file)
    reads as an empty file.
    """
    text = existing or ""
    block = render_hosts_block(entries) if entries else ""
    found = find_hosts_block(text)
    lines = _lines(text)
    if found is None:
        if not block:
            return text
        if not text or text.endswith("\n"):
            return text + block
        return text + "\n" + block[:-1]
    begin, end = found
    before, after = "".join(lines[:begin]), "".join(lines[end + 1 :])
    terminated = lines[end].endswith("\n")
    if block:
        return before + (block if terminated else block[:-1]) + after
    if not terminated and before.endswith("\n"):
        # The block was appended to a file without a trailing newline: drop the newline sparkd added.
        before = before[:-1]
    return before + after


def render_nm_unmanaged(netdevs: Sequence[str]) -> bytes:
    """The contents of the NetworkManager conf.d file that marks `netdevs` unmanaged.

    `interface-name:=NAME` matches that name literally, without globbing (NetworkManager.conf(5),
    "Device List Format"); the specs are separated by `;`. `key+=value` appends to the list an earlier file
    set (NetworkManager.conf(5), "an extension to the normal keyfile format"): Ubuntu's own
    10-globally-managed-devices.conf, or an operator's list, stays in force."""
    if not netdevs:
        raise ValueError("no netdev to mark unmanaged: remove the NetworkManager file instead")
    for netdev in netdevs:
        if not _NETDEV.fullmatch(netdev) or netdev in (".", ".."):
            raise ValueError(f"not a netdev name: {netdev!r}")
    if len(set(netdevs)) != len(netdevs):
        raise ValueError(f"a netdev is listed twice: {', '.join(netdevs)}")
    specs = ";".join(f"interface-name:={n}" for n in netdevs)
    return f"{NM_HEADER}[keyfile]\nunmanaged-devices+={specs}\n".encode()


def render_modules_load(modules: Sequence[str]) -> bytes:
    """The contents of /etc/modules-load.d/sparkd.conf: one module name per line."""
    if not modules:
        raise ValueError("no module to load: remove the modules-load.d file instead")
    seen: set[str] = set()
    for module in modules:
        if not _MODULE.fullmatch(module):
            raise ValueError(f"not a kernel module name: {module!r} (letters, digits, `_` and `-`, 1..55 characters)")
        key = module.replace("-", "_")
        if key in seen:
            raise ValueError(f"kernel module {module} is listed twice")
        seen.add(key)
    return (MODULES_HEADER + "".join(f"{m}\n" for m in modules)).encode()
