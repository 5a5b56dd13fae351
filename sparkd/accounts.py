"""The accounts deployment units run as (`frameworks.user`, `frameworks.groups`): what the config may
name, and whether this machine has them.

Never root: not by name, not by UID 0, not through a root-equivalent supplementary group. systemd
resolves User= and SupplementaryGroups= through the machine's own accounts (NSS), whatever the
sysroot, so `check_accounts` looks them up there, once at start-up, instead of each unit's start
failing later (216/GROUP, 217/USER). docs/unit-sandbox.md explains the choices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sparkd.errors import ConfigError

#: The config's word for systemd's DynamicUser=yes.
DYNAMIC = "dynamic"
#: A name as systemd's User= takes it strictly (a letter or '_' first, at most 31 characters), or a UID.
ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}|[1-9][0-9]{0,9}")
#: Never a unit's user: root by name or UID, nobody (shared by unrelated services), and (uid_t)-1.
REFUSED_USERS = ("root", "0", "nobody", "65534", "4294967295")
#: Root-equivalent groups, or ones that read secrets (adm reads every journal, prompts included): never
#: given to a unit as supplementary groups. The container runtime adds docker itself, for its CLI only.
REFUSED_GROUPS = ("root", "sudo", "wheel", "admin", "adm", "disk", "shadow", "docker", "lxd", "libvirt")


def user_problem(user: str) -> str | None:
    """Why `user` cannot be `frameworks.user`, or None."""
    if user == DYNAMIC:
        return None
    if user in REFUSED_USERS:
        return f'must not be {user!r}: deployment units never run as root or nobody; use "dynamic" or an account'
    if not ACCOUNT_RE.fullmatch(user):
        return (
            'must be "dynamic", an account name (like sparkd-engine: at most 31 letters, digits, "-" or "_") '
            f"or a UID; got {user!r}"
        )
    return None


def group_problem(group: object, socket_group: str) -> str | None:
    """Why `group` cannot be in `frameworks.groups`, or None (`socket_group`: the admin socket's group)."""
    if not isinstance(group, str) or not ACCOUNT_RE.fullmatch(group) or group.isdecimal():
        return f"must be a list of group names (letters, digits, '-' and '_'); got {group!r}"
    if group in REFUSED_GROUPS or group == socket_group:
        return f"must not hold {group!r}: it is root-equivalent or reads secrets; give the unit only what it needs"
    return None


def check_accounts(
    user: str, groups: Sequence[str], path: str = "<config>", passwd: Any = None, group: Any = None
) -> None:
    """`user` and `groups` exist on this machine and none is root's (UID or GID 0); a numeric UID needs no
    account. Raises ConfigError naming the field. `passwd`/`group`: the pwd and grp modules (tests pass fakes)."""
    import grp
    import pwd

    passwd, group = passwd or pwd, group or grp
    if user != DYNAMIC and not user.isdecimal():
        try:
            uid = passwd.getpwnam(user).pw_uid
        except KeyError:
            raise ConfigError(
                path,
                "frameworks.user",
                f"no account {user!r} on this machine; create one (useradd --system --user-group --no-create-home "
                f'--shell /usr/sbin/nologin {user}) or use "dynamic"',
            ) from None
        if uid == 0:
            raise ConfigError(path, "frameworks.user", f"{user!r} has UID 0: it is root; use another account")
    for name in groups:
        try:
            gid = group.getgrnam(name).gr_gid
        except KeyError:
            raise ConfigError(
                path, "frameworks.groups", f"no group {name!r} on this machine; create it or remove it"
            ) from None
        if gid == 0:
            raise ConfigError(path, "frameworks.groups", f"{name!r} has GID 0: it is root's group; remove it")
