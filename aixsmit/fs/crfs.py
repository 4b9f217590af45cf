"""Make a file system for user data, as AIX ``crfs`` does: mkfs, mount point, fstab, mount.

Refused: a device that is not a block device, one in use (mounted, or opened exclusively by
something else), one that already holds a file system or partition table (blkid says so).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import AixsmitError
from ..host.common import run
from . import fstab

LINUX_VFS = ("ext4", "xfs", "btrfs")


@dataclass
class Made:
    device: str
    vfs: str
    uuid: str
    mount_point: str
    fstab: str


def parse_size(text: str) -> int:
    """AIX -a size=: 512-byte blocks, or a number with M or G."""
    m = re.fullmatch(r"(\d+)([MmGg]?)", text.strip())
    if not m:
        raise AixsmitError(f"crfs: size={text} is not a size (512-byte blocks, or a number with M or G)", code=2)
    n = int(m.group(1))
    unit = m.group(2).upper()
    return n * (1 << 20 if unit == "M" else 1 << 30 if unit == "G" else 512)


def device_size(device: str) -> int:
    name = os.path.basename(os.path.realpath(device))
    try:
        return int(Path(f"/sys/class/block/{name}/size").read_text()) * 512
    except (OSError, ValueError):
        with open(device, "rb") as f:
            return f.seek(0, os.SEEK_END)


def existing_fs(device: str) -> str:
    res = run(["blkid", "-p", "-o", "export", "--", device], timeout=30)
    if res.rc != 0:
        return ""
    facts = dict(l.split("=", 1) for l in res.stdout.splitlines() if "=" in l)
    return facts.get("TYPE") or facts.get("PTTYPE") and f"a {facts['PTTYPE']} partition table" or ""


def check_device(device: str, program: str = "crfs", overwrite: bool = False) -> None:
    import stat

    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise AixsmitError(f"{program}: {device} does not exist.")
    if not stat.S_ISBLK(st.st_mode):
        raise AixsmitError(f"{program}: {device} is not a block device.")
    from .mounts import read_mountinfo

    for m in read_mountinfo():
        if m.dev == f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" or os.path.realpath(m.device) == os.path.realpath(device):
            raise AixsmitError(f"{program}: {device} is in use: it is mounted on {m.path}.")
    try:
        fd = os.open(device, os.O_RDONLY | os.O_EXCL)
        os.close(fd)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise AixsmitError(f"{program}: {device} is in use (held open by the system: a mount, swap, RAID or LVM).")
        raise AixsmitError(f"{program}: {device}: {exc.strerror}")
    if not overwrite:
        fs = existing_fs(device)
        if fs:
            raise AixsmitError(f"{program}: {device} already holds {fs if ' ' in fs else 'a ' + fs + ' file system'}; "
                               f"{program} will not overwrite it.")


def mkfs_argv(device: str, vfs: str, size: int | None = None, label: str = "") -> list[str]:
    """The mkfs command line for ``vfs`` on ``device`` (shown before it runs, then run by mkfs)."""
    if vfs not in LINUX_VFS:
        raise AixsmitError(f"crfs: {vfs} is not a file system type aixsmit makes on Linux ({', '.join(LINUX_VFS)}).",
                           code=2)
    tool = shutil.which(f"mkfs.{vfs}")
    if not tool:
        raise AixsmitError(f"crfs: mkfs.{vfs} is not installed.")
    if vfs == "ext4":
        argv = [tool, "-q", "-F"] + (["-L", label[:16]] if label else []) + [device]
        if size:
            argv.append(str(size // 1024) + "k")
    elif vfs == "xfs":
        argv = [tool, "-q", "-f"] + (["-L", label[:12]] if label else []) + (["-d", f"size={size}"] if size else []) + [device]
    else:
        argv = [tool, "-q", "-f"] + (["-L", label] if label else []) + (["-b", str(size)] if size else []) + [device]
    return argv


def mkfs(device: str, vfs: str, size: int | None = None, label: str = "") -> str:
    """Make the file system; returns its UUID."""
    argv = mkfs_argv(device, vfs, size, label)
    res = run(argv, timeout=600)
    if res.rc != 0:
        raise AixsmitError(f"crfs: mkfs.{vfs} {device} failed: {res.message}")
    from ..host.linux import device_uuid

    return device_uuid(device)


def crfs(system, vfs: str, device: str, mount_point: str, auto: bool = True, size: int | None = None,
         mount: bool = False) -> Made:
    if not mount_point.startswith("/") or mount_point == "/":
        raise AixsmitError("crfs: the mount point must be an absolute path other than /", code=2)
    mount_point = os.path.normpath(mount_point)
    for e in system.table():
        if e.mount_point == mount_point:
            raise AixsmitError(f"crfs: something is already mounted on {mount_point} ({e.mount.device}).")
    check_device(device)
    if size and size > device_size(device):
        raise AixsmitError(f"crfs: size {size // (1 << 20)} MB is more than {device} holds "
                           f"({device_size(device) // (1 << 20)} MB).")
    uuid = mkfs(device, vfs, size, label=os.path.basename(mount_point))
    path = system.abs_path(mount_point)
    os.makedirs(path, exist_ok=True)
    table = fstab.path(system.root)
    fstab.set_entry(table, mount_point, f"UUID={uuid}" if uuid else device, vfs, "defaults" if auto else "defaults,noauto", 2)
    if mount:
        res = run(["mount", "-t", vfs, "--", device, path])
        if res.rc != 0:
            raise AixsmitError(f"mount: 0506-324 Cannot mount {device} on {mount_point}: {res.message}")
    return Made(device, vfs, uuid, mount_point, str(table))
