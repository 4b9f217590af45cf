"""Where the image goes: the room it needs, the hidden partial file it is written to before
the rename, stale partials of killed runs, and the log of images made (vgbackuplog).
"""

from __future__ import annotations

import os
import subprocess

from .infofiles import fs_facts
from .streams import PACK_LEVEL

PARTIAL = ".aixsmit-partial-"


def partial_name(dest: str) -> str:
    """The hidden temporary name beside ``dest`` that tar writes to; renamed over ``dest`` only
    when the image is complete and on disk."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}{PARTIAL}{os.getpid()}")


def required_room(include: list[str], structure_only: bool, staged: int) -> int:
    """Bytes an unpacked image of the file systems mounted at ``include`` needs, before the
    walk has counted the entries: they are estimated from the inodes in use; each costs tar a
    header and a pax record (1.5 KB). With ``structure_only`` (savevg -r), only the ``staged``
    information files and the table of contents. A packed image: packed_size()."""
    if structure_only:
        return 1536 * (staged + 1)
    return sum(used + 1536 * inodes for _, used, _, inodes in map(fs_facts, include))


def packed_size(unpacked: int, ratio: float) -> int:
    """Bytes an image of ``unpacked`` bytes takes packed at ``ratio`` (packed_ratio), with
    PACKED_MARGIN; never more than unpacked."""
    if ratio >= 1.0:
        return unpacked
    return min(unpacked, int(unpacked * ratio * PACKED_MARGIN))


# A packed image's size is estimated from a sample of its files: the sample's ratio with a
# quarter more, since the files left out of it may pack worse.
PACKED_MARGIN = 1.25


def packed_ratio(tops: list[str], files: int = 64, take: int = 1 << 16, entries: int = 4000) -> float:
    """How small zstd packs the files below ``tops`` (absolute paths): the first ``take`` bytes
    of up to ``files`` regular files met breadth first (looking at ``entries`` directory entries
    at most), packed at PACK_LEVEL, over their unpacked size. 1.0 when nothing could be sampled
    or zstd is missing. Costs a few tens of milliseconds."""
    sample = bytearray()
    queue = list(tops)
    seen = found = 0
    while queue and found < files and seen < entries:
        top = queue.pop(0)
        try:
            with os.scandir(top) as it:
                for ent in it:
                    seen += 1
                    try:
                        if ent.is_dir(follow_symlinks=False):
                            queue.append(ent.path)
                        elif ent.is_file(follow_symlinks=False) and found < files:
                            with open(ent.path, "rb") as f:
                                data = f.read(take)
                            if data:
                                sample += data
                                found += 1
                    except OSError:
                        continue
                    if seen >= entries:
                        break
        except OSError:
            continue
    if not sample:
        return 1.0
    try:
        packed = subprocess.run(["zstd", f"-{PACK_LEVEL}", "-c", "-q"], input=bytes(sample),
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 1.0
    return min(1.0, len(packed) / len(sample))


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
