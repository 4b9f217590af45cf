"""Install an image onto other devices: a system image (clone) or a volume group backup (restvg).

From the image's information file: for each file system, make one of the recorded type on the
device mapped to its mount point (checked against the data the image holds for it: a smaller
device is fine when the data fits - AIX's SHRINK), mount them under the target by mount point,
parents first, restore the image, and write the target's fstab for the new devices' UUIDs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import AixsmitError
from ..fs import fstab as fstab_file
from ..fs.crfs import check_device, device_size, mkfs
from ..host.common import run
from . import archive, image_data

Emit = Callable[[str, str], None]
OVERHEAD = 8 << 20  # journal and metadata of a small file system


@dataclass
class Target:
    mount_point: str
    device: str
    vfs: str
    device_bytes: int
    data_bytes: int
    recorded_bytes: int
    options: str
    fit: str = ""  # "full size" | "shrunk"
    uuid: str = ""


def parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        mp, sep, dev = item.partition("=")
        if not sep or not mp.startswith("/") or not dev:
            raise AixsmitError(f"--map {item}: expected MOUNTPOINT=DEVICE, such as /usr=/dev/sdb2", code=2)
        mp = os.path.normpath(mp)
        if mp in out:
            raise AixsmitError(f"--map: {mp} is mapped twice", code=2)
        out[mp] = dev
    if len(set(out.values())) != len(out):
        raise AixsmitError("--map: one device is mapped to two file systems", code=2)
    return out


def data_per_fs(image: str, mount_points: list[str]) -> dict[str, int]:
    """Bytes of file data the image holds for each file system (its deepest mount point)."""
    order = sorted(mount_points, key=len, reverse=True)
    sizes = {mp: 0 for mp in mount_points}
    for m in archive.members(image, "clone"):
        name = "/" + archive._norm(m.name)[2:]
        for mp in order:
            if mp == "/" or name == mp or name.startswith(mp + "/"):
                sizes[mp] += m.size
                break
    return sizes


def plan(image: str, mapping: dict[str, str], program: str = "clone") -> list[Target]:
    info = archive.read_info(image, program)
    fss = image_data.every(info.stanzas, "fs_data")
    recorded = {fs["FS_NAME"]: fs for fs in fss}
    missing = [mp for mp in recorded if mp not in mapping]
    if missing:
        raise AixsmitError(f"{program}: no device is mapped for {', '.join(missing)} (the image holds "
                           f"{', '.join(recorded)}); give --map {missing[0]}=DEVICE")
    extra = [mp for mp in mapping if mp not in recorded]
    if extra:
        raise AixsmitError(f"{program}: the image has no file system {extra[0]} (it holds {', '.join(recorded)})")
    data = data_per_fs(image, list(recorded))
    targets = []
    for mp, fs in sorted(recorded.items(), key=lambda kv: (kv[0].count("/"), kv[0]) if kv[0] != "/" else (0, "")):
        dev = mapping[mp]
        if not os.path.exists(dev):
            raise AixsmitError(f"{program}: {dev} (for {mp}) does not exist.")
        size = device_size(dev)
        need = int(data[mp] * 1.1) + OVERHEAD
        rec = int(fs.get("FS_SIZE_BYTES") or int(fs.get("FS_SIZE", "0") or 0) * 512)
        if size < need:
            raise AixsmitError(
                f"0512-029 {program}: There is not enough room on {dev} for {mp}: the image holds "
                f"{data[mp] // (1 << 20) + 1} MB for it, about {need // (1 << 20) + 1} MB are needed with the file "
                f"system's own space, and {dev} has {size // (1 << 20)} MB.")
        targets.append(Target(mp, dev, fs.get("FS_VFS", "ext4"), size, data[mp], rec, fs.get("FS_OPTIONS", ""),
                              "full size" if size >= rec else "shrunk"))
    return targets


def format_plan(targets: list[Target]) -> list[str]:
    lines = [f"{'MOUNT POINT':<20} {'DEVICE':<16} {'TYPE':<6} {'DEVICE MB':>9} {'DATA MB':>8} {'WAS MB':>7}  FIT"]
    for t in targets:
        lines.append(f"{t.mount_point:<20} {t.device:<16} {t.vfs:<6} {t.device_bytes >> 20:>9} "
                     f"{(t.data_bytes >> 20) + 1:>8} {t.recorded_bytes >> 20:>7}  {t.fit}")
    return lines


def install(image: str, mapping: dict[str, str], target: str, emit: Emit, *, dry_run: bool = False,
            overwrite: bool = False, hostname: str = "", keep_mounted: bool = False, program: str = "clone",
            fstab_root: str | None = None) -> list[Target]:
    targets = plan(image, mapping, program)
    for line in format_plan(targets):
        emit(line, "stdout")
    if dry_run:
        emit(f"{program}: dry run: no device was touched.", "stdout")
        return targets
    for t in targets:
        check_device(t.device, program, overwrite=overwrite)
    mounted: list[str] = []
    try:
        for t in targets:
            emit(f"Making a {t.vfs} file system on {t.device} for {t.mount_point} ({t.fit}).", "stdout")
            t.uuid = mkfs(t.device, t.vfs, label=os.path.basename(t.mount_point) or "root")
        for t in targets:  # parents first: the plan is ordered by depth
            path = os.path.join(target, t.mount_point.lstrip("/")) if t.mount_point != "/" else target
            os.makedirs(path, exist_ok=True)
            res = run(["mount", "-t", t.vfs, "--", t.device, path])
            if res.rc != 0:
                raise AixsmitError(f"mount: 0506-324 Cannot mount {t.device} on {path}: {res.message}")
            mounted.append(path)
        emit(f"Restoring {image} into {target}.", "stdout")
        archive.restore(image, target, [], False, emit, program=program)
        fstab = Path(fstab_root or target) / "etc" / "fstab"
        for t in targets:
            opts = ",".join(o for o in t.options.split(",") if o and o not in ("rw", "relatime", "seclabel")) or "defaults"
            fstab_file.set_entry(fstab, t.mount_point, f"UUID={t.uuid}", t.vfs, opts, 1 if t.mount_point == "/" else 2)
        emit(f"Wrote {fstab} for the new devices (by UUID).", "stdout")
        if hostname:
            Path(target, "etc").mkdir(exist_ok=True)
            Path(target, "etc", "hostname").write_text(hostname + "\n")
            hosts = Path(target, "etc", "hosts")
            if hosts.exists():
                lines = [l if not l.startswith("127.0.1.1") else f"127.0.1.1\t{hostname}" for l in hosts.read_text().splitlines()]
                hosts.write_text("\n".join(lines) + "\n")
            emit(f"Set the host name to {hostname}.", "stdout")
        if program == "clone":
            root = next((t for t in targets if t.mount_point == "/"), None)
            emit("To boot it: install a boot loader for the new root file system"
                 + (f" (UUID {root.uuid})" if root else "")
                 + " - for example 'grub-install --boot-directory=TARGET/boot DISK' and 'update-grub' inside the "
                   "clone - and check the kernel command line's root= entry.", "stdout")
    finally:
        if not keep_mounted:
            for path in reversed(mounted):
                run(["umount", "--", path])
    return targets
