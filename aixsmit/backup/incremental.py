"""Backups by level, as AIX ``backup -LEVEL [-u] -f DEST FS`` (aix-smit.md §5), on GNU tar.

Level 0 is everything; level N (1-9) is what changed since the last backup at a lower level.
On Linux the "since" is a GNU tar snapshot file (``--listed-incremental``): the snapshot of
the base level is *copied* before each run, so every daily level 1 is measured against the
weekly level 0 (the GNU tar manual's schedule) and restoring two archives - the full and the
latest level 1 - reproduces the tree, files deleted since included. With ``-u`` the run is
recorded (``dumpdates`` and the snapshot of this level, under the state directory). A level
N > 0 with no lower level recorded is made as a level 0, and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import AixsmitError
from ..state import atomic_write_bytes, state_dir
from ..jobs.runner import orphan_proof
from .engine import PARTIAL

Emit = Callable[[str, str], None]


@dataclass
class LevelResult:
    path: str
    level: int
    promoted: bool
    bytes: int
    status: str  # OK, WARN


def fs_key(path: str) -> str:
    return "root" if path == "/" else path.strip("/").replace("/", "_")


def _snar_dir() -> Path:
    d = state_dir() / "snapshots"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def snar_path(key: str, level: int) -> Path:
    return _snar_dir() / f"{key}.{level}.snar"


def dumpdates_path() -> Path:
    return state_dir() / "dumpdates"


def read_dumpdates() -> list[tuple[str, int, str]]:
    try:
        lines = dumpdates_path().read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), parts[2]))
    return out


def _record(fs: str, level: int, when: str) -> None:
    rows = [r for r in read_dumpdates() if not (r[0] == fs and r[1] == level)]
    rows.append((fs, level, when))
    rows.sort()
    atomic_write_bytes(dumpdates_path(), "".join(f"{f} {l} {d}\n" for f, l, d in rows).encode(), 0o644)


def base_level(key: str, level: int) -> int | None:
    for lower in range(level - 1, -1, -1):
        if snar_path(key, lower).exists():
            return lower
    return None


def backup_fs(fs_path: str, shown: str, level: int, dest: str, record: bool, emit: Emit) -> LevelResult:
    """Back up the file system mounted at ``fs_path`` (host path; ``shown`` as the operator
    names it) at ``level`` into ``dest``."""
    if not 0 <= level <= 9:
        raise AixsmitError(f"backup: the level must be 0 to 9, not {level}", code=2)
    if not dest.startswith("/"):
        raise AixsmitError("backup: the backup device or file name must start with a '/'.", code=2)
    if not os.path.ismount(fs_path):
        raise AixsmitError(f"backup: {shown} is not a mounted file system.")
    key = fs_key(shown)
    promoted = False
    base = base_level(key, level) if level > 0 else None
    if level > 0 and base is None:
        emit(f"backup: There is no lower-level backup of {shown} recorded: this level {level} backup is made as a "
             "full (level 0) backup.", "stdout")
        level, promoted = 0, True
    when = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    emit(f"backup: The date of this level {level} backup is {when}.", "stdout")
    if base is None:
        emit("backup: The date of the last level 0 backup is the epoch.", "stdout")
    else:
        last = [d for f, l, d in read_dumpdates() if f == shown and l == base]
        emit(f"backup: The date of the last level {base} backup is {last[-1] if last else 'not recorded'}.", "stdout")
    emit(f"backup: Backing up {shown} to {dest}.", "stdout")
    work = tempfile.mkdtemp(prefix="aixsmit-backup-")
    snar = os.path.join(work, "snar")
    if base is not None:
        shutil.copyfile(snar_path(key, base), snar)  # measured against the base, which stays as it is
    # The archive is a new file created by aixsmit (0600, O_EXCL|O_NOFOLLOW): a name planted in a
    # shared folder is replaced by the rename, never written through (safefile).
    from ..safefile import OutputFile, destination_kind

    out = None
    try:
        if destination_kind(os.path.abspath(dest), "backup") == "file":
            out = OutputFile(dest, marker=PARTIAL)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise AixsmitError(f"backup: cannot write to {dest}: {exc.strerror}", code=3)
    except AixsmitError:
        shutil.rmtree(work, ignore_errors=True)
        raise
    argv = ["tar", "--create", f"--file={out.child_path if out else dest}", "--format=posix", "--xattrs", "--xattrs-include=*", "--sparse",
            "--one-file-system", f"--listed-incremental={snar}", "--no-check-device", "--totals",
            "-C", fs_path, "."]
    try:
        argv, preexec = orphan_proof(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", preexec_fn=preexec,
                              pass_fds=(out.fd,) if out else ())
        for line in proc.stderr.splitlines():
            if line.startswith("Total bytes written"):
                emit(f"backup: {line}", "stdout")
            elif line:
                emit(line, "stderr")
        if proc.returncode > 1:
            raise AixsmitError(f"backup: the backup of {shown} failed (tar exit status {proc.returncode}); no archive "
                               "was written.", code=3)
        if out is not None:
            out.commit()
        if record:
            atomic_write_bytes(snar_path(key, level), Path(snar).read_bytes())
            for higher in range(level + 1, 10):  # a new base makes the higher levels' snapshots stale
                try:
                    snar_path(key, higher).unlink()
                except FileNotFoundError:
                    pass
            _record(shown, level, when)
        emit("backup: The backup is complete.", "stdout")
        return LevelResult(dest, level, promoted, os.path.getsize(dest), "WARN" if proc.returncode == 1 else "OK")
    finally:
        if out is not None:
            out.discard()
            out.close()
        shutil.rmtree(work, ignore_errors=True)
