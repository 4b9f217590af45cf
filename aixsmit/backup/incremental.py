"""Backups by level, as AIX ``backup -LEVEL [-u] -f DEST FS`` (aix-smit.md §5), on GNU tar.

Level 0 is everything; level N (1-9) is what changed since the last backup at a lower level.
On Linux the "since" is a GNU tar snapshot file (``--listed-incremental``): the snapshot of
the base level is *copied* before each run (tar rewrites the file it is given), so every
daily level 1 is measured against the weekly level 0 (the GNU tar manual's schedule) and
restoring two archives - the full and the latest level 1 - reproduces the tree, files
deleted since included. With ``-u`` the run is
recorded (``dumpdates`` and the snapshot of this level, under the state directory). A level
N > 0 with no lower level recorded is made as a level 0, and says so.
"""

from __future__ import annotations

# Imported where used, not here: shutil, tempfile, pathlib, glob, typing, and the image writer's
# modules (what a level backup's start-up would otherwise pay for: bench/bench_backup.py, level).
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AixsmitError
from ..fs.mounts import unescape
from ..state import atomic_write_bytes, state_path

Emit = Callable[[str, str], None]


@dataclass
class LevelResult:
    path: str
    level: int
    promoted: bool
    bytes: int
    status: str  # OK, WARN


KEY_MAX = 200  # a key is a file and folder name: well below NAME_MAX (255 bytes)


def fs_key(path: str) -> str:
    """The name under which a file system's level backups live: ``/`` -> ``-``, ``/home/x`` ->
    ``home-x``, ``/home_x`` -> ``home_x``, ``/a-b`` -> ``a\\x2db``.

    The rules are systemd-escape's for paths (systemd.unit(5), "String Escaping"): the path is
    normalised, its slashes become ``-``, and every byte other than ASCII letters, digits,
    ``:``, ``_`` and a non-leading ``.`` is written ``\\xNN``. Two different mount points
    never share a key, and a key reads as its mount point. A key that would be longer than
    ``KEY_MAX`` keeps a readable head and ends in ``~`` and 16 hex digits of the SHA-256 of
    the exact path bytes. ``systemd-escape --path`` gives the same result (tests check it).
    """
    raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raise AixsmitError(f"backup: {path!r} is not an absolute path", code=2)
    parts = [p for p in raw.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise AixsmitError(f"backup: {path!r} is not a normalised path", code=2)
    if not parts:
        return "-"
    out = []
    for i, byte in enumerate(b"/".join(parts)):
        ch = chr(byte)
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and (ch.isalnum() or ch in ":_")) or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    key = "".join(out)
    if len(key) > KEY_MAX:
        import hashlib

        key = f"{key[:KEY_MAX - 17]}~{hashlib.sha256(b'/' + b'/'.join(parts)).hexdigest()[:16]}"
    return key


def mount_point_of(key: str) -> str | None:
    """The mount point a key names (``systemd-escape --unescape --path``); None for a key that
    ends in a hash (the path was too long to spell out) or that is not one."""
    if "~" in key or not key or key.startswith("/"):
        return None
    if key == "-":
        return "/"
    out = bytearray(b"/")
    i = 0
    while i < len(key):
        if key[i] == "\\" and key[i + 1:i + 2] == "x" and re.fullmatch(r"[0-9a-f]{2}", key[i + 2:i + 4]):
            out.append(int(key[i + 2:i + 4], 16))
            i += 4
        else:
            out += b"/" if key[i] == "-" else key[i].encode()
            i += 1
    path = os.fsdecode(bytes(out))
    return path if fs_key(path) == key else None


def legacy_key(path: str) -> str:
    """The key of earlier versions (``/home/x`` and ``/home_x`` both ``home_x``): only to find,
    and refuse, state they left behind."""
    return "root" if path == "/" else path.strip("/").replace("/", "_")


def _snar_dir() -> str:
    # "levels", not the "snapshots" of earlier versions, whose names two mount points could share.
    d = os.path.join(state_path(), "levels")
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    return d


def snar_path(key: str, level: int) -> str:
    return os.path.join(_snar_dir(), f"{key}.{level}.snar")


def legacy_snapshots(mount_point: str) -> list[str]:
    """Snapshot files an earlier version wrote (``snapshots/``) under the lossy key: they may
    belong to another file system (``/home/x`` or ``/home_x``), so they are never built upon."""
    import glob

    d = os.path.join(state_path(), "snapshots")
    return sorted(glob.glob(os.path.join(glob.escape(d), f"{glob.escape(legacy_key(mount_point))}.[0-9].snar")))


def dumpdates_path() -> str:
    return os.path.join(state_path(), "dumpdates")


def read_dumpdates() -> list[tuple[str, int, str]]:
    try:
        with open(dumpdates_path(), encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].isdigit():
            out.append((os.fsdecode(os.fsencode(unescape(parts[0]))), int(parts[1]), parts[2]))
    return out


def _escape(name: str) -> str:
    """Every byte but printable ASCII (and the backslash) as ``\\ooo``, as mountinfo does."""
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\{b:03o}" for b in os.fsencode(name))


def _record(fs: str, level: int, when: str) -> None:
    rows = [r for r in read_dumpdates() if not (r[0] == fs and r[1] == level)]
    rows.append((fs, level, when))
    rows.sort()
    # The name is escaped as in /proc/self/mountinfo, so a space or a newline in a mount point
    # can neither split a record nor forge one.
    text = "".join(f"{_escape(f)} {l} {d}\n" for f, l, d in rows)
    atomic_write_bytes(dumpdates_path(), text.encode(errors="surrogateescape"), 0o644)


def base_level(key: str, level: int) -> int | None:
    for lower in range(level - 1, -1, -1):
        if os.path.exists(snar_path(key, lower)):
            return lower
    return None


@dataclass(frozen=True)
class Chain:
    """A schedule's own chain: the snapshot a level 1 is measured against (None for a level 0)
    and where the snapshot of this run is kept (None: not kept). Outside ``dumpdates``."""

    base: str | os.PathLike[str] | None
    keep: str | os.PathLike[str] | None


def _working_snapshot(base: str | os.PathLike[str] | None) -> int:
    """A descriptor of the snapshot file tar is given for one run: an anonymous file in memory
    (memfd), empty for a level 0, else a copy of ``base`` made by the kernel (sendfile). GNU tar
    reads the file given to --listed-incremental and rewrites it in place, so the base is never
    given itself. Nothing to remove afterwards, whatever ends the run."""
    fd = os.memfd_create("aixsmit-snapshot", os.MFD_CLOEXEC)
    if base is None:
        return fd
    try:
        src = os.open(base, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size, done = os.fstat(src).st_size, 0
            while done < size:
                sent = os.sendfile(fd, src, done, size - done)
                if sent == 0:  # the base got shorter meanwhile
                    break
                done += sent
        finally:
            os.close(src)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    """The whole content of the file open at ``fd``, from its start."""
    chunks, at = [], 0
    while chunk := os.pread(fd, 1 << 20, at):
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)


def backup_fs(fs_path: str, shown: str, level: int, dest: str, record: bool, emit: Emit,
              chain: Chain | None = None) -> LevelResult:
    """Back up the file system mounted at ``fs_path`` (host path; ``shown`` as the operator
    names it) at ``level`` into ``dest``.

    Without ``chain`` the base is the last recorded backup of a lower level (``dumpdates`` and
    the snapshots of the state directory, written with ``record``); with it, the base and the
    snapshot are the chain's own and nothing global is read or written."""
    if not 0 <= level <= 9:
        raise AixsmitError(f"backup: the level must be 0 to 9, not {level}", code=2)
    if not dest.startswith("/"):
        raise AixsmitError("backup: the backup device or file name must start with a '/'.", code=2)
    if not os.path.ismount(fs_path):
        raise AixsmitError(f"backup: {shown} is not a mounted file system.")
    key = fs_key(shown)
    promoted = False
    if chain is not None:
        base = None if chain.base is None else level - 1
        base_file = chain.base
    else:
        base = base_level(key, level) if level > 0 else None
        base_file = snar_path(key, base) if base is not None else None
        stale = legacy_snapshots(shown) if level > 0 and base is None else []
        if stale:
            emit(f"backup: {stale[0]} was recorded under a name that {shown} shares with other mount points; it "
                 "is not used.", "stdout")
    if level > 0 and base is None:
        emit(f"backup: There is no lower-level backup of {shown} recorded: this level {level} backup is made as a "
             "full (level 0) backup.", "stdout")
        level, promoted = 0, True
    when = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    emit(f"backup: The date of this level {level} backup is {when}.", "stdout")
    if base is None:
        emit("backup: The date of the last level 0 backup is the epoch.", "stdout")
    elif chain is not None:
        stem = os.path.splitext(os.path.basename(chain.base))[0]
        emit(f"backup: The last level {base} backup is the one of this chain ({stem}).", "stdout")
    else:
        last = [d for f, l, d in read_dumpdates() if f == shown and l == base]
        emit(f"backup: The date of the last level {base} backup is {last[-1] if last else 'not recorded'}.", "stdout")
    emit(f"backup: Backing up {shown} to {dest}.", "stdout")
    # Measured against the base, which stays as it is.
    snar = _working_snapshot(base_file)
    # The archive is a new file created by aixsmit (0600, O_EXCL|O_NOFOLLOW): a name planted in a
    # shared folder is replaced by the rename, never written through (safefile).
    from ..safefile import OutputFile
    from .destination import partial_marker, writable_destination
    from .tarrun import run_tar

    out = None
    try:
        if writable_destination("backup", os.path.abspath(dest), [fs_path]) == "file":
            out = OutputFile(dest, marker=partial_marker())
    except OSError as exc:
        os.close(snar)
        raise AixsmitError(f"backup: cannot write to {dest}: {exc.strerror}", code=3)
    except AixsmitError:
        os.close(snar)
        raise
    # tar opens the snapshot as /dev/fd/N: its own descriptor N, passed to it, of the same file.
    argv = ["tar", "--create", "--force-local", f"--file={out.child_path if out else dest}", "--format=posix", "--xattrs", "--xattrs-include=*", "--sparse",
            "--one-file-system", f"--listed-incremental=/dev/fd/{snar}", "--no-check-device", "--totals",
            "-C", fs_path, "."]
    try:
        proc = run_tar(argv, f"the backup of {shown}", emit, pass_fds=(out.fd, snar) if out else (snar,))
        if out is not None:
            out.commit()
        if chain is not None:
            if chain.keep is not None:
                os.makedirs(os.path.dirname(chain.keep), mode=0o700, exist_ok=True)
                atomic_write_bytes(chain.keep, _read_all(snar))
        elif record:
            atomic_write_bytes(snar_path(key, level), _read_all(snar))
            for higher in range(level + 1, 10):  # a new base makes the higher levels' snapshots stale
                try:
                    os.unlink(snar_path(key, higher))
                except FileNotFoundError:
                    pass
            _record(shown, level, when)
        emit("backup: The backup is complete.", "stdout")
        return LevelResult(dest, level, promoted, os.path.getsize(dest), "WARN" if proc.returncode == 1 else "OK")
    finally:
        if out is not None:
            out.discard()
            out.close()
        os.close(snar)
