"""``ROOT/etc/fstab``: read it, and set one mount point's line keeping every other line.

ROOT may be another system's tree (``--root``): the file is read and written with
:mod:`aixsmit.inroot`, resolved inside ROOT (``ROOT/etc -> /etc`` never reaches the host's), and
read up to :data:`READ_LIMIT` bytes. One writer of fstab files: this one and clone's both go
through ``inroot.write_in``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import inroot
from .mounts import escape, unescape

NAME = "/etc/fstab"
READ_LIMIT = 1 << 20  # a real fstab is a few KB


@dataclass(frozen=True)
class FstabEntry:
    device: str  # as written: /dev/sdb1, UUID=…, LABEL=…
    mount_point: str
    vfs: str
    options: str


def path(root: str):
    """``ROOT/etc/fstab`` as a pathlib.Path (imported here: reading needs none)."""
    from pathlib import Path

    return Path(root) / "etc" / "fstab"


def _entry(line: str) -> FstabEntry | None:
    parts = line.split()
    if len(parts) < 3 or parts[0].startswith("#"):
        return None
    return FstabEntry(unescape(parts[0]), os.path.normpath(unescape(parts[1])), parts[2],
                      parts[3] if len(parts) > 3 else "defaults")


def _text(root: str) -> str | None:
    """ROOT/etc/fstab resolved inside ROOT, at most READ_LIMIT bytes; None when missing.
    OSError (EFBIG, ELOOP, EINVAL for not a regular file, ...) otherwise."""
    data = inroot.read_in(root, NAME, limit=READ_LIMIT)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def read(root: str, strict: bool = False) -> list[FstabEntry]:
    """The entries of ROOT/etc/fstab; a missing or unreadable file is none (or, ``strict``, an
    OSError: ENOENT when missing, EFBIG when larger than READ_LIMIT, ELOOP for a link loop)."""
    try:
        text = _text(root)
        if text is None:
            raise FileNotFoundError(2, "No such file or directory", os.path.join(root, "etc", "fstab"))
    except OSError:
        if strict:
            raise
        return []
    return [e for e in map(_entry, text.splitlines()) if e is not None]


def by_mount_point(root: str) -> dict[str, FstabEntry]:
    return {e.mount_point: e for e in read(root)}


def check_writable(root: str) -> None:
    """Raise OSError now when ROOT/etc/fstab could not be read or its folder not reached inside
    ROOT (before anything is changed: crfs checks this before it makes a file system)."""
    inroot.makedirs_in(root, "/etc")
    _text(root)


def set_entry(root: str, mount_point: str, device_field: str, vfs: str, options: str, passno: int) -> None:
    """Set ROOT/etc/fstab's line for ``mount_point`` (replacing one that is there), keeping
    every other line; written inside ROOT by ``inroot.write_in`` (new file, renamed over).
    Raises OSError."""
    text = _text(root)
    lines = text.splitlines() if text is not None else []
    out, done = [], False
    new = f"{device_field} {escape(mount_point)} {vfs} {options} 0 {passno}"
    for line in lines:
        e = _entry(line)
        if e is not None and e.mount_point == mount_point:
            if not done:
                out.append(new)
                done = True
            continue
        out.append(line)
    if not done:
        out.append(new)
    inroot.makedirs_in(root, "/etc")
    inroot.write_in(root, NAME, ("\n".join(out) + "\n").encode("utf-8", "surrogateescape"), 0o644)
