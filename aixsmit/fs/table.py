"""The classified mount table of one system, seen through ``--root``."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import config as _config
from ..errors import AixsmitError
from .classify import REMOTE, SYSTEM, USER, VIRTUAL, classify_all
from .mounts import Mount, relative_to_root


@dataclass(slots=True, unsafe_hash=True)
class Entry:
    """A mount and its data class: a value, never changed once made (not ``frozen``, for the
    cost of making one per mount, as :class:`~aixsmit.fs.mounts.Mount`)."""

    mount: Mount
    cls: str

    @property
    def mount_point(self) -> str:
        return self.mount.mount_point

    def to_json(self) -> dict:
        return self.mount.to_json(self.cls)


@dataclass(frozen=True)
class SysOnly:
    """The guide's check: is only the operating system mounted?"""

    user: tuple[str, ...]
    remote: tuple[str, ...]
    virtual: tuple[str, ...]
    system: tuple[str, ...]

    @property
    def has_root(self) -> bool:
        """Whether ``/`` is in the table: without it (an empty or partial table) nothing says
        that only the system is mounted."""
        return "/" in self.system

    @property
    def ok(self) -> bool:
        return self.has_root and not self.user

    def to_json(self) -> dict:
        return {"ok": self.ok, "root": self.has_root, "user": list(self.user), "remote": list(self.remote),
                "virtual": list(self.virtual)}


def top(table: list[Entry], cls: str | None = None) -> list[Entry]:
    """One entry per mount point, in table order: the top-most where mounts are stacked (the
    last one listed at a path hides the others); only data class ``cls`` when given."""
    last: dict[str, Entry] = {}
    for e in table:
        last[e.mount_point] = e
    return [e for e in last.values() if cls is None or e.cls == cls]


def user_mount_points(table: list[Entry]) -> list[str]:
    """Every mount point where a user file system is mounted, in table order — also one hidden
    under another mount stacked over it at the same path (a tmpfs over /data): it is mounted,
    so the guide's check and the unmount must see it."""
    out: dict[str, None] = {}
    for e in table:
        if e.cls == USER and not e.mount.host_mount:
            out.setdefault(e.mount_point)
    return list(out)


# Memory-backed: unmounting one destroys what it holds, and nothing can bring it back.
VOLATILE_VFS = frozenset(("tmpfs", "ramfs"))


def normalize_root(root: str | None) -> str:
    root = root or "/"
    real = os.path.realpath(root)
    if not os.path.isdir(real):
        raise AixsmitError(f"--root {root}: not a directory")
    return real


class System:
    """A host, an alternate root and a configuration: everything the file-system services need."""

    def __init__(self, host=None, root: str | None = "/", config: _config.Config | None = None,
                 mounts: list[Mount] | None = None, host_name: str | None = None):
        from ..host import get_host

        self.host = host or get_host(host_name)
        self.root = normalize_root(root) if mounts is None else (os.path.normpath(root or "/"))
        self.config = config if config is not None else _config.load()
        self._fixed = mounts

    @property
    def system_fs(self) -> tuple[str, ...]:
        return self.config.system_fs(self.host.name)

    def all_mounts(self) -> list[Mount]:
        """Every mount of the host, absolute paths (no --root filtering)."""
        return list(self._fixed) if self._fixed is not None else self.host.mounts()

    def table(self, all_mounts: list[Mount] | None = None) -> list[Entry]:
        mounts = relative_to_root(all_mounts if all_mounts is not None else self.all_mounts(), self.root)
        return list(map(Entry, mounts, classify_all(mounts, self.system_fs)))

    def sysonly(self, table: list[Entry] | None = None) -> SysOnly:
        table = table if table is not None else self.table()
        pick = lambda c: tuple(e.mount_point for e in table if e.cls == c)  # noqa: E731
        return SysOnly(user=pick(USER), remote=pick(REMOTE), virtual=pick(VIRTUAL), system=pick(SYSTEM))

    def shown(self, path: str) -> str:
        """A host path as the operator names it: relative to --root when it lies below it."""
        if self.root != "/" and path.startswith(self.root + "/"):
            return path[len(self.root):]
        return path

    def abs_path(self, mount_point: str) -> str:
        """The host path of ``mount_point`` as the operator names it (relative to --root)."""
        if not mount_point.startswith("/"):
            raise AixsmitError(f"{mount_point}: a mount point must be an absolute path such as /home")
        mp = os.path.normpath(mount_point)
        if self.root == "/":
            return mp
        return self.root if mp == "/" else self.root + mp


def used_below(path: str, prune: set[str]) -> tuple[int, int]:
    """(bytes allocated, entries) below ``path`` on its own file system (``du -sx``), not
    descending into the mount points in ``prune``; a hard-linked file counts once. For the part
    of a file system that plays ``/`` when ``--root DIR`` is not a mount point."""
    total, count, seen = 0, 0, set()
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0, 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for ent in it:
                try:
                    st = ent.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != dev:
                    continue
                if st.st_nlink > 1:
                    if (st.st_ino) in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_blocks * 512
                count += 1
                if ent.is_dir(follow_symlinks=False) and ent.path not in prune:
                    stack.append(ent.path)
    return total, count
