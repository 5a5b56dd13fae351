"""The files sparkd writes on a host: NCCL settings, the shells' profile, the /etc/hosts block,
NetworkManager's hands-off file, modules-load.d, and the backups of a setup it takes over.

An item is a file's bytes, mode and owner, or None where there is no file. A file that is
there already keeps its mode and owner when sparkd rewrites it; a new one gets the mode of
its kind, owned by root. Writes are atomic (`Files.write_atomic`): a crash leaves the old
bytes or the new, never half of either. Symlinks are never followed (an attacker's link in
/etc must not redirect a root write): such a path is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sparkd.engine.hostcfg.component import Change, Record
from sparkd.engine.hostcfg.foreign import NETPLAN_DIR, NM_DIR
from sparkd.errors import HostOperationFailed
from sparkd.host.protocols import Files
from sparkd.model.host import ActionKind, DesiredHost, HostAction
from sparkd.render.hostfiles import merge_hosts, render_modules_load, render_nm_unmanaged, render_profile
from sparkd.render.nccl import render_nccl_conf

NCCL_CONF = "/etc/nccl.conf"
PROFILE = "/etc/profile.d/sparkd-nccl.sh"
HOSTS = "/etc/hosts"
NM_CONF = "/etc/NetworkManager/conf.d/90-sparkd-interconnect.conf"
MODULES = "/etc/modules-load.d/sparkd.conf"
#: Where the files of an existing setup that sparkd may take over live (`foreign.find_foreign`).
TAKEOVER_DIRS = (NETPLAN_DIR, NM_DIR)
#: The largest file sparkd reads or keeps in its journal (an /etc/hosts of a few thousand lines).
MAX_FILE = 1 << 20


def backup_path(backup_dir: str, path: str) -> str:
    """Where the backup of a taken-over file lives: /etc/netplan/40-cx7.yaml -> <backup_dir>/etc/netplan/..."""
    return backup_dir + path


@dataclass(frozen=True)
class FileItem:
    """A regular file: its bytes, permission bits and owner."""

    content: bytes
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class WriteFile:
    path: str
    item: FileItem
    existed: bool

    def show(self) -> HostAction:
        return HostAction(
            ActionKind.WRITE_FILE,
            self.path,
            "differs" if self.existed else "absent",
            f"{len(self.item.content)} bytes, mode {self.item.mode:04o}",
            f"{'rewrite' if self.existed else 'write'} {self.path}",
            "files",
        )


@dataclass(frozen=True)
class RemoveFile:
    path: str

    def show(self) -> HostAction:
        return HostAction(ActionKind.REMOVE_FILE, self.path, "present", "absent", f"remove {self.path}", "files")


#: path -> (mode of a new file, the bytes it should hold for `desired` given what is there; None: no file)
Render = Callable[[DesiredHost, bytes | None], bytes | None]


def _nccl(desired: DesiredHost, have: bytes | None) -> bytes | None:
    return render_nccl_conf(dict(desired.nccl)) if desired.nccl else None


def _profile(desired: DesiredHost, have: bytes | None) -> bytes | None:
    return render_profile(dict(desired.nccl)) if desired.nccl else None


def _hosts(desired: DesiredHost, have: bytes | None) -> bytes | None:
    if have is None and not desired.hosts:
        return None
    try:
        # surrogateescape: a file that is not UTF-8 still comes back byte for byte outside the block
        text = None if have is None else have.decode(errors="surrogateescape")
        merged = merge_hosts(text, desired.hosts).encode(errors="surrogateescape")
        return None if have is None and not merged else merged
    except (ValueError, UnicodeDecodeError) as e:
        raise HostOperationFailed(f"cannot update {HOSTS}: {e}", path=HOSTS) from e


def _nm(desired: DesiredHost, have: bytes | None) -> bytes | None:
    return render_nm_unmanaged(desired.netdevs()) if desired.persist else None


def _modules(desired: DesiredHost, have: bytes | None) -> bytes | None:
    return render_modules_load(["nvidia-peermem"]) if desired.peermem else None


FIXED: dict[str, tuple[int, Render]] = {
    NCCL_CONF: (0o644, _nccl),
    PROFILE: (0o644, _profile),
    HOSTS: (0o644, _hosts),
    NM_CONF: (0o600, _nm),
    MODULES: (0o644, _modules),
}


class FilesComponent:
    """sparkd's files (implements `component.Component`)."""

    name = "files"

    def __init__(self, files: Files, backup_dir: str) -> None:
        self.files, self.backup_dir = files, backup_dir

    def accepts(self, key: str) -> bool:
        """sparkd's own files, the backups, and the files of existing setups it takes over: nothing else."""
        if ".." in key.split("/"):
            return False
        taken = any(key.startswith(d + "/") and "/" not in key[len(d) + 1 :] for d in TAKEOVER_DIRS)
        return (
            key in FIXED
            or taken
            or (key.startswith(self.backup_dir + "/") and self.accepts(key[len(self.backup_dir) :]))
        )

    def keys(self, desired: DesiredHost) -> list[str]:
        keys = list(FIXED)
        for path, _ in desired.takeover:
            keys += [backup_path(self.backup_dir, path), path]  # the backup is written before the original goes
        return keys

    async def observe(self, keys: list[str]) -> Mapping[str, FileItem | None]:
        result: dict[str, FileItem | None] = {}
        for path in keys:
            try:
                meta = self.files.stat(path)
                data = self.files.read_bounded(path, MAX_FILE) if meta is not None else None
            except OSError as e:
                raise HostOperationFailed(
                    f"cannot read {path}: {e.strerror or e} (sparkd writes only regular files, never through a "
                    "symlink: replace it with a regular file, or remove it)",
                    path=path,
                ) from e
            if data is not None and len(data) > MAX_FILE:
                raise HostOperationFailed(f"{path} is larger than {MAX_FILE} bytes; sparkd will not rewrite it")
            result[path] = None if meta is None or data is None else FileItem(data, *meta)
        return result

    def target(self, desired: DesiredHost, key: str, have: FileItem | None) -> FileItem | None:
        if key in FIXED:
            mode, render = FIXED[key]
            content = render(desired, None if have is None else have.content)
        else:
            taken = dict(desired.takeover)
            if key in taken:
                return None  # the taken-over file is disabled
            originals = {backup_path(self.backup_dir, p): c for p, c in taken.items()}
            mode, content = 0o600, originals.get(key)
        if content is None:
            return None
        if have is not None:
            return FileItem(content, have.mode, have.uid, have.gid)
        return FileItem(content, mode, 0, 0)

    def diff(self, key: str, want: FileItem | None, have: FileItem | None) -> list[Change]:
        if want == have:
            return []
        if want is None:
            return [RemoveFile(key)]
        return [WriteFile(key, want, have is not None)]

    async def apply(self, change: Change) -> None:
        try:
            match change:
                case WriteFile():
                    item = change.item
                    self.files.write_atomic(change.path, item.content, item.mode, (item.uid, item.gid))
                case RemoveFile():
                    self.files.remove(change.path)
                case _:
                    raise HostOperationFailed(f"not a file change: {change!r}")
        except OSError as e:
            path = getattr(change, "path", "?")
            raise HostOperationFailed(f"cannot write {path}: {e.strerror or e}", path=path) from e

    def dump(self, item: FileItem | None) -> Record:
        if item is None:
            return None
        content = base64.b64encode(item.content).decode()
        return {"content": content, "mode": item.mode, "uid": item.uid, "gid": item.gid}

    def load(self, record: Record) -> FileItem | None:
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) != {"content", "mode", "uid", "gid"}:
            raise ValueError("a file record has exactly content, mode, uid and gid")
        numbers = [record["mode"], record["uid"], record["gid"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 32 for n in numbers):
            raise ValueError("a file record's mode, uid and gid are non-negative integers")
        if record["mode"] > 0o777 or not isinstance(record["content"], str):
            raise ValueError(
                "a file record's mode is at most 0777 (no setuid, setgid or sticky bit) and its content base64 text"
            )
        try:
            content = base64.b64decode(record["content"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"a file record's content is not base64: {e}") from e
        if len(content) > MAX_FILE:
            raise ValueError(f"a file record holds at most {MAX_FILE} bytes")
        return FileItem(content, record["mode"], record["uid"], record["gid"])
