"""Who keeps a mounted file system busy: process, user, command, and how.

Linux: one pass over ``/proc``, checking each process's cwd, root, executable, open files and
memory maps. A reference matches a mount when its device number (``st_dev``) is the mount's
``major:minor``; where that device is mounted at more than one place (bind mounts), the path
must also lie under the mount point, so only the mount really in use is blamed.

AIX: ``fuser -cu`` output, with command names from psutil.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from .mounts import Mount

CWD, ROOT, EXE, OPEN, MMAP = "cwd", "root", "executable", "open file", "memory map"
# Held by the kernel, not a process: a loop device's backing file, an active swap file.
LOOP, SWAP = "loop backing file", "swap file"
# fuser's access letters, for the table operators know ("-": no process, fuser has no letter).
LETTER = {CWD: "c", ROOT: "r", EXE: "e", OPEN: "f", MMAP: "m", LOOP: "-", SWAP: "-"}


@dataclass(frozen=True)
class Holder:
    pid: int
    user: str
    command: str
    how: str
    path: str

    def to_json(self) -> dict:
        return asdict(self)


def _makedev(dev: str) -> int:
    major, _, minor = dev.partition(":")
    return os.makedev(int(major), int(minor))


class _Users:
    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def name(self, uid: int) -> str:
        name = self._names.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._names[uid] = name
        return name


def _read_raw(path: str) -> bytes:
    """Read a /proc file with plain system calls (no buffered file object: this runs per process)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _under(path: str, mount_paths: Sequence[str]) -> bool:
    for mp in mount_paths:
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            return True
    return False


def scan_linux(targets: Sequence[Mount], all_mounts: Iterable[Mount], proc: str = "/proc") -> list[Holder]:
    """Every process reference that keeps one of ``targets`` busy (absolute paths in ``path``)."""
    want: dict[int, list[str]] = {}
    for m in targets:
        if m.dev:
            want.setdefault(_makedev(m.dev), []).append(m.path)
            # A btrfs subvolume's files carry their own device number, not the super block's
            # that mountinfo shows: take the one the mount point's root really has too.
            try:
                d = os.stat(m.path).st_dev
            except OSError:
                continue
            if d not in want:
                want[d] = [m.path]
    if not want:
        return []
    # A device mounted in more than one place needs the path check to tell the mounts apart.
    seen_count: dict[int, int] = {}
    for m in all_mounts:
        if m.dev:
            d = _makedev(m.dev)
            if d in want:
                seen_count[d] = seen_count.get(d, 0) + 1
    ambiguous = {d for d, n in seen_count.items() if n > 1}
    # A subvolume's number covers only what lies below that mount point: check the path too.
    ambiguous |= {d for d in want if d not in seen_count}
    # Maps name devices as hex "fd:01".
    want_maps = {f"{os.major(d):02x}:{os.minor(d):02x}": d for d in want}
    want_maps_b = [f" {k} ".encode() for k in want_maps]

    users = _Users()
    out: list[Holder] = []
    stat, readlink, scandir = os.stat, os.readlink, os.scandir
    own = os.getpid()

    def hit(link: str, st_dev: int) -> str | None:
        try:
            target = readlink(link)
        except OSError:
            target = "?"
        if st_dev in ambiguous and not _under(target.removesuffix(" (deleted)"), want[st_dev]):
            return None
        return target

    def refs_of(name: str) -> list[tuple[str, str]]:
        base = f"{proc}/{name}"
        refs: list[tuple[str, str]] = []
        for link, how in (("cwd", CWD), ("root", ROOT), ("exe", EXE)):
            try:
                d = stat(f"{base}/{link}").st_dev
            except OSError:
                continue
            if d in want:
                target = hit(f"{base}/{link}", d)
                if target is not None:
                    refs.append((how, target))
        try:
            fds = list(scandir(f"{base}/fd"))
        except OSError:
            fds = []
        for fd in fds:
            try:
                d = stat(fd.path).st_dev
            except OSError:
                continue
            if d in want:
                target = hit(fd.path, d)
                if target is not None:
                    refs.append((OPEN, target))
        maps = _read_raw(f"{base}/maps")
        # Most processes map nothing from the wanted devices: a byte search skips them cheaply.
        if maps and any(k in maps for k in want_maps_b):
            mapped: set[str] = set()
            for line in maps.decode("utf-8", "surrogateescape").splitlines():
                parts = line.split(None, 5)
                if len(parts) < 6 or parts[3] not in want_maps or parts[4] == "0":
                    continue
                path = parts[5]
                if path in mapped:
                    continue
                d = want_maps[parts[3]]
                if d in ambiguous and not _under(path.removesuffix(" (deleted)"), want[d]):
                    continue
                mapped.add(path)
                refs.append((MMAP, path))
        return refs

    def chunk_refs(names: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
        return [(n, r) for n in names if (r := refs_of(n))]

    names = [e.name for e in scandir(proc) if e.name.isdigit() and int(e.name) != own]
    # The scan is system calls on /proc, which release the GIL: two or more threads overlap them.
    workers = max(1, min(4, os.cpu_count() or 1))
    size = max(64, len(names) // (workers * 4) + 1)
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = [hit for part in pool.map(chunk_refs, chunks) for hit in part]
    else:
        found = [hit for part in map(chunk_refs, chunks) for hit in part]

    for name, refs in found:
        pid = int(name)
        base = f"{proc}/{name}"
        try:
            uid = os.stat(base).st_uid
            with open(f"{base}/comm", "rb") as f:
                command = f.read().decode("utf-8", "replace").strip()
        except OSError:
            continue  # the process ended while we looked
        user = users.name(uid)
        seen: set[tuple[str, str]] = set()
        for how, path in refs:
            if (how, path) in seen:
                continue
            seen.add((how, path))
            out.append(Holder(pid=pid, user=user, command=command, how=how, path=path))
    out.sort(key=lambda h: (h.pid, h.how, h.path))
    return out


def kernel_holders(targets: Sequence[Mount], sys_block: str = "/sys/block", swaps: str = "/proc/swaps") -> list[Holder]:
    """What keeps ``targets`` busy with no process to blame: a loop device whose backing file
    lies on one of them (unless the loop is itself the source of one of ``targets``, which go
    together), and an active swap file on one. ``pid`` is 0, ``command`` names the device."""
    from ..host.linux import loop_info
    from .mounts import unescape

    want = [m for m in targets if m.dev]
    if not want:
        return []
    devs = {_makedev(m.dev) for m in want}
    sources = {os.path.realpath(m.device) for m in targets if m.device.startswith("/dev/")}

    def on_target(path: str) -> bool:
        if not _under(path, [m.path for m in want]):
            return False
        try:
            return os.stat(path).st_dev in devs
        except OSError:
            return True  # deleted or unreachable, but named under the mount: still blame it

    out: list[Holder] = []
    try:
        names = sorted(os.listdir(sys_block), key=lambda n: (len(n), n))
    except OSError:
        names = []
    for name in names:
        if not name.startswith("loop") or os.path.realpath(f"/dev/{name}") in sources:
            continue
        info = loop_info(f"/dev/{name}")
        if info and on_target(info["backing_file"]):
            out.append(Holder(0, "kernel", f"/dev/{name}", LOOP, info["backing_file"]))
    try:
        with open(swaps, "rb") as f:
            lines = os.fsdecode(f.read()).splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "file":
            path = unescape(parts[0])
            if on_target(path):
                out.append(Holder(0, "kernel", "swap", SWAP, path))
    return out


# --- AIX ---------------------------------------------------------------------------------

_AIX_LETTERS = {"c": CWD, "r": ROOT, "e": EXE, "s": MMAP}
_FUSER_ROW = re.compile(r"(\d+)([a-zA-Z]*)(?:\(([^)]*)\))?")


def parse_aix_fuser(text: str, mount_point: str, names: dict[int, str] | None = None) -> list[Holder]:
    """Parse ``fuser -cu MOUNT`` with stdout and stderr merged: ``/home:    11630c(guest)``."""
    out: list[Holder] = []
    for line in text.splitlines():
        if ":" not in line:
            body = line
        else:
            head, _, body = line.partition(":")
            if not head.strip().startswith("/") and not head.strip() == mount_point:
                body = line
        for pid, letters, user in _FUSER_ROW.findall(body):
            hows = [_AIX_LETTERS.get(c, OPEN) for c in letters] or [OPEN]
            for how in hows:
                out.append(
                    Holder(
                        pid=int(pid),
                        user=user or "?",
                        command=(names or {}).get(int(pid), "?"),
                        how=how,
                        path=mount_point,
                    )
                )
    return out
