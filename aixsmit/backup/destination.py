"""Where the image goes: the room it needs, the hidden partial file it is written to before
the rename, stale partials of killed runs, and the log of images made (vgbackuplog).
"""

from __future__ import annotations

import os

from .infofiles import fs_facts

PARTIAL = ".aixsmit-partial-"


def partial_name(dest: str) -> str:
    """The hidden temporary name beside ``dest`` that tar writes to; renamed over ``dest`` only
    when the image is complete and on disk."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}{PARTIAL}{os.getpid()}")


def required_room(include: list[str], structure_only: bool, staged: int) -> int:
    """Bytes an image of the file systems mounted at ``include`` needs, before the walk has
    counted the entries: they are estimated from the inodes in use; each costs tar a header and
    a pax record (1.5 KB). With ``structure_only`` (savevg -r), only the ``staged``
    information files and the table of contents."""
    if structure_only:
        return 1536 * (staged + 1)
    return sum(used + 1536 * inodes for _, used, _, inodes in map(fs_facts, include))


def _fmt_kb(n: int) -> str:
    return f"{n // 1024} ({n // (1024 * 1024)} MB)"


def space_block(required: int, available: int) -> list[str]:
    return [
        "+---------------------------------------------------------------------+",
        "                System Backup Image Space Information",
        "              (Sizes are displayed in 1024-byte blocks.)",
        "+---------------------------------------------------------------------+",
        "",
        f"Required = {_fmt_kb(required)}    Available = {_fmt_kb(available)}",
        "",
    ]


BACKUP_LOG = "vgbackuplog"


def log_backup(dest: str, prog: str, vg: str, when: str, size: int, status: str) -> None:
    """One line per image, ';'-separated as AIX's vgbackuplog: device or file, command, date,
    shrink size (MB), full size (MB), and aixsmit's own: volume group and result."""
    from ..state import state_path

    mb = max(1, size // (1024 * 1024)) if size else 0
    line = f"{dest};{prog};{when};{mb};{mb};{vg};{status}\n"
    try:
        fd = os.open(os.path.join(state_path(), BACKUP_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # the image is what matters; a log that cannot be written is not a failed backup


def nearly_full(directory: str) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def clean_stale_partials(directory: str) -> None:
    """Remove temporary images of earlier runs whose process is gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if PARTIAL not in name:
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
