"""``ROOT/etc/fstab``: read it, and set one mount point's line keeping every other line."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..state import atomic_write_bytes
from .mounts import escape, unescape


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


def read(root: str, strict: bool = False) -> list[FstabEntry]:
    """The entries of ROOT/etc/fstab; a missing file is none (or, ``strict``, an OSError)."""
    try:
        with open(os.path.join(root, "etc", "fstab"), errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        if strict:
            raise
        return []
    return [e for e in map(_entry, text.splitlines()) if e is not None]


def by_mount_point(root: str) -> dict[str, FstabEntry]:
    return {e.mount_point: e for e in read(root)}


def set_entry(fstab, mount_point: str, device_field: str, vfs: str, options: str, passno: int) -> None:
    """Set the line for ``mount_point`` (replacing one that is there), keeping every other line."""
    try:
        lines = fstab.read_text().splitlines()
    except FileNotFoundError:
        lines = []
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
    fstab.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(fstab, ("\n".join(out) + "\n").encode(), 0o644)
