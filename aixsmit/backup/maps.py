"""``-m``: a map file per logical volume, where its blocks lie on the disks.

AIX writes ``/tmp/vgdata/VG/LV.map`` with the physical partitions of each logical volume, so a
restore can put it back in the same place. Linux has no physical partitions; the map says the
same in 512-byte sectors of the whole disk, read from sysfs (and, for device-mapper volumes
such as LVM's, from ``dmsetup table``)::

    # aixsmit map of /dev/sda2 (512-byte sectors on the whole disk)
    sda:2048-1050623

A loop device adds its backing file as a comment. A file system with no block device (tmpfs)
has no map.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SYS_BLOCK = "/sys/class/block"
SYS_DEV = "/sys/dev/block"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _name(device: str) -> str | None:
    """The kernel's name of a block device path (``/dev/mapper/vg-lv`` -> ``dm-0``)."""
    if not device.startswith("/dev/"):
        return None
    real = os.path.realpath(device)
    name = os.path.basename(real)
    return name if os.path.isdir(os.path.join(SYS_BLOCK, name)) else None


def _on_disk(name: str, start: int, length: int) -> tuple[str, int, int]:
    """A range of ``name`` as a range of its whole disk (a partition adds its start)."""
    base = os.path.join(SYS_BLOCK, name)
    if os.path.exists(os.path.join(base, "partition")):
        disk = os.path.basename(os.path.realpath(os.path.join(base, "..")))
        return disk, int(_read(os.path.join(base, "start"))) + start, length
    return name, start, length


def _dm_ranges(name: str) -> list[tuple[str, int, int]] | None:
    """The linear segments of a device-mapper volume, or None when they cannot be read."""
    dmsetup = shutil.which("dmsetup")
    if dmsetup is None:
        return None
    major, minor = _read(os.path.join(SYS_BLOCK, name, "dev")).split(":")
    res = subprocess.run([dmsetup, "table", "-j", major, "-m", minor], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    out = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[2] != "linear":
            return None  # striped, mirrored, thin...: no simple map
        length, offset = int(parts[1]), int(parts[4])
        pv = os.path.basename(os.path.realpath(os.path.join(SYS_DEV, parts[3])))
        out.append(_on_disk(pv, offset, length))
    return out


def map_text(device: str) -> str | None:
    """The map of ``device``, or None when it is no block device."""
    name = _name(device)
    if name is None:
        return None
    lines = [f"# aixsmit map of {device} (512-byte sectors on the whole disk)"]
    base = os.path.join(SYS_BLOCK, name)
    if name.startswith("dm-"):
        ranges = _dm_ranges(name)
        if ranges is None:
            slaves = sorted(os.listdir(os.path.join(base, "slaves"))) if os.path.isdir(os.path.join(base, "slaves")) else []
            lines.append(f"# device-mapper volume on {' '.join(slaves) or '?'}: its segments could not be read "
                         "(dmsetup missing, or not linear)")
            return "\n".join(lines) + "\n"
    else:
        ranges = [_on_disk(name, 0, int(_read(os.path.join(base, "size"))))]
    if os.path.exists(os.path.join(base, "loop", "backing_file")):
        lines.append(f"# backing file: {_read(os.path.join(base, 'loop', 'backing_file'))}")
    lines += [f"{disk}:{start}-{start + length - 1}" for disk, start, length in ranges]
    return "\n".join(lines) + "\n"
