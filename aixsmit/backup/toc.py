"""List Contents of a Backup (SMIT ``listtoc``, AIX ``restore -T``): any backup aixsmit makes -
a system or volume group image, a backup by level (``backup -N``) or by name (``backup -i``).

The volume header goes to stderr as AIX prints it (aix-smit.md §3.8): ``Files backed up by
name`` for images and backups by name, ``Files backed up by inode`` for backups by level;
then one line per file, its size and ``./path``, and the totals. The archive is read once,
from its start (a tape is read as a stream): the header is decided from the first members.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Callable

from ..errors import AixsmitError
from . import archive, image_data

Emit = Callable[[str, str], None]
LOOKAHEAD = 10  # an image's information file is among its first members (archive.read_info)


def _is_info(name: str) -> bool:
    return name == "./image.data" or (name.startswith("./tmp/vgdata/") and name.endswith(".data")
                                      and name.count("/") == 4)


def list_contents(path: str, files: list[str], emit: Emit, program: str = "restore") -> int:
    """Print the contents of the backup at ``path`` (only ``files``, as ./path, and what is
    below them, when given). Errors: ``0512-054`` for a missing or empty file; a damaged or
    foreign archive is a one-line error after what could be listed."""
    wanted = [archive._norm(f) for f in files]
    try:
        st = os.stat(path)
        when = time.ctime(st.st_mtime) if stat.S_ISREG(st.st_mode) else ""
    except OSError:
        when = ""
    from ..fs.mounts import visible

    tf = archive.open_image(path, program)
    total = count = 0
    head: list = []
    by = "name"
    try:
        damage = archive.Damage()
        it = archive.read_members(tf, damage)  # the one reader: damage as list, verify and restore see it
        for m in it:
            head.append(m)
            if m.type == b"D" or m.pax_has("GNU.dumpdir"):
                by = "inode"  # a backup by level: GNU tar's incremental records
            if _is_info(archive._norm(m.name)):
                f = tf.extractfile(m)
                stanzas = image_data.parse(f.read().decode("utf-8", "replace") if f else "")
                when = image_data.first(stanzas, "image_data").get("DATE_TIME", "") or when
                break
            if len(head) >= LOOKAHEAD:
                break
        emit(f"New volume on {visible(path)}:", "stderr")
        emit(" Cluster 51200 bytes (100 blocks).", "stderr")
        emit("    Volume number 1", "stderr")
        emit(f"    Date of backup: {when}", "stderr")
        emit(f"    Files backed up by {by}", "stderr")
        emit(f"    User {visible(os.environ.get('USER', 'root'))}", "stderr")

        def rows():
            yield from head
            yield from it

        for m in rows():
            if m.isdir() or m.type == b"D":
                continue
            name = archive._norm(m.name)
            if wanted and not any(name == w or name.startswith(w + "/") for w in wanted):
                continue
            total += m.size
            count += 1
            emit(f"{m.size:>12} {visible(name)}", "stdout")
    except (OSError, ValueError) as exc:
        raise AixsmitError(f"{program}: {path} is damaged or not a backup, after {count} files: {exc}")
    finally:
        tf.close()
    if damage:
        raise archive.damaged(path, program, damage)
    emit(f"The total size is {total} bytes.", "stdout")
    emit(f"The number of archived files is {count}.", "stdout")
    return 0
