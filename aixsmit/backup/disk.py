"""A blank disk made ready for a clone: a GPT with a BIOS boot partition (GRUB for BIOS), an EFI
system partition (GRUB for EFI: /boot/efi, FAT32) and one partition per other file system of the
image, sized by the image's fitting (or by a layout file).

The partition table is written with ``sfdisk`` (util-linux). Partition devices: a disk whose
kernel driver reads partition tables gets them from sfdisk's re-read; a loop device attached
without partition scanning gets them from ``partx -a`` (``losetup -P`` does not make them on
every kernel), and those are removed again with ``partx -d`` when the clone is done.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import AixsmitError

MiB = 1 << 20
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"  # GRUB's core image lives here on a GPT disk (i386-pc)
LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # the EFI system partition (UEFI spec 2.10, 5.3.3)
ESP_MOUNT = "/boot/efi"
ESP_MIN = 40 * MiB  # FAT32 needs 65525 clusters: about 33 MiB with 512-byte clusters
ESP_DEFAULT = 256 * MiB  # an ESP the image does not hold (not mounted when it was made)
START = 1 * MiB  # the first partition starts at 1 MiB, as every partitioning tool does
BIOS_SIZE = 1 * MiB
GPT_TAIL = 1 * MiB  # the backup GPT at the end of the disk (33 sectors), rounded up


@dataclass
class Part:
    number: int
    mount_point: str  # "" for the BIOS boot partition
    size: int  # bytes; the last partition gets what is left
    device: str
    type: str = LINUX_FS  # GPT partition type GUID


def part_device(disk: str, number: int) -> str:
    """The kernel's name for partition ``number`` of ``disk``: sda1, but loop0p1 and nvme0n1p1."""
    return f"{disk}p{number}" if disk[-1:].isdigit() else f"{disk}{number}"


def parse_layout(text: str, mount_points: list[str], origin: str,
                 optional: dict[str, int] | None = None) -> dict[str, int | None]:
    """A layout file: one ``MOUNTPOINT SIZE`` line per file system (SIZE as 512M, 2G, or ``rest``).

    Returns mount point -> bytes (None for ``rest``). Every file system of the image must be
    named, once (but those of ``optional``, which get its size); ``rest`` at most once.
    """
    sizes: dict[str, int | None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        m = re.fullmatch(r"(\d+)([MG])", parts[1].upper()) if len(parts) == 2 else None
        if len(parts) != 2 or not parts[0].startswith("/") or not (m or parts[1] == "rest"):
            raise AixsmitError(f"clone: {origin} line {n}: expected MOUNTPOINT SIZE (such as /home 2G, or /home rest)",
                               code=2)
        mp = os.path.normpath(parts[0])
        if mp in sizes:
            raise AixsmitError(f"clone: {origin} line {n}: {mp} is named twice", code=2)
        if mp not in mount_points:
            raise AixsmitError(f"clone: {origin} line {n}: the image has no file system {mp} "
                               f"(it holds {', '.join(mount_points)})", code=2)
        sizes[mp] = None if parts[1] == "rest" else int(m.group(1)) * (MiB if m.group(2) == "M" else 1 << 30)
    for mp, size in (optional or {}).items():
        sizes.setdefault(mp, size)
    missing = [mp for mp in mount_points if mp not in sizes]
    if missing:
        raise AixsmitError(f"clone: {origin} gives no size for {', '.join(missing)}", code=2)
    if sum(v is None for v in sizes.values()) > 1:
        raise AixsmitError(f"clone: {origin}: only one file system can take the rest of the disk", code=2)
    return sizes


def layout(disk: str, disk_bytes: int, fss: list[tuple[str, int, int]],
           fixed: dict[str, int | None] | None = None, *, bios: bool = True, efi: bool = False) -> list[Part]:
    """Partitions for ``fss`` = [(mount point, bytes needed, bytes it had)] in that order.

    ``bios``: a BIOS boot partition first. ``efi``: the file system on ESP_MOUNT becomes the
    EFI system partition (put first in ``fss``: the last one takes the rest of the disk), at
    least ESP_MIN. Without ``fixed`` sizes: each file system gets the size it had when the whole
    disk holds them all, else what it needs plus a share of the free space in proportion to what
    it had; the last one gets the rest of the disk. Raises 0512-029 when even what they need
    does not fit.
    """
    if efi:
        fss = [(mp, max(n, ESP_MIN) if mp == ESP_MOUNT else n, h) for mp, n, h in fss]
    room = disk_bytes - START - (BIOS_SIZE if bios else 0) - GPT_TAIL
    need = sum(n for _, n, _ in fss)
    if need > room:
        raise AixsmitError(f"0512-029 clone: There is not enough room on {disk}: the image's file systems need about "
                           f"{need // MiB + 1} MB, and {disk} has {room // MiB} MB for them.")
    parts = [Part(1, "", BIOS_SIZE, part_device(disk, 1), BIOS_BOOT)] if bios else []
    if fixed:
        rest_mp = next((mp for mp, v in fixed.items() if v is None), fss[-1][0])
        sizes = {mp: fixed[mp] or 0 for mp, _, _ in fss}
        for mp, n, _ in fss:
            if mp != rest_mp and sizes[mp] < n:
                raise AixsmitError(f"0512-029 clone: {mp} needs about {n // MiB + 1} MB; the layout gives it "
                                   f"{sizes[mp] // MiB} MB.")
        sizes[rest_mp] = room - sum(v for mp, v in sizes.items() if mp != rest_mp)
        if sizes[rest_mp] < dict((mp, n) for mp, n, _ in fss)[rest_mp]:
            raise AixsmitError(f"0512-029 clone: the layout leaves {sizes[rest_mp] // MiB} MB for {rest_mp}, which "
                               f"needs about {dict((mp, n) for mp, n, _ in fss)[rest_mp] // MiB + 1} MB.")
        order = [mp for mp, _, _ in fss if mp != rest_mp] + [rest_mp]
    else:
        had = sum(max(h, n) for _, n, h in fss)
        if had <= room:
            sizes = {mp: max(h, n) for mp, n, h in fss}
        else:
            spare = room - need
            grow = sum(max(h - n, 0) for _, n, h in fss) or 1
            sizes = {mp: n + spare * max(h - n, 0) // grow for mp, n, h in fss}
        order = [mp for mp, _, _ in fss]
    for mp in order:
        n = len(parts) + 1
        parts.append(Part(n, mp, sizes[mp] // MiB * MiB, part_device(disk, n),
                          ESP if efi and mp == ESP_MOUNT else LINUX_FS))
    return parts


def sfdisk_script(parts: list[Part]) -> str:
    """The input ``sfdisk`` reads: a GPT, the partitions in order, the last one to the disk's end."""
    lines = ["label: gpt"]
    for i, p in enumerate(parts):
        size = "" if i == len(parts) - 1 else f", size={p.size // 512}"
        name = {BIOS_BOOT: "BIOS boot", ESP: "EFI system partition"}.get(p.type) or \
            (p.mount_point if p.mount_point != "/" else "root")
        start = f"start={START // 512}, " if i == 0 else ""
        lines.append(f'{start}type={p.type}{size}, name="{name}"')
    return "\n".join(lines) + "\n"


def partition_type(device: str) -> str:
    """The partition type of ``device`` as its disk's table says (a GPT type GUID in upper case,
    or an MBR type such as ``ef``); "" when it is no partition of a table sfdisk reads."""
    import json
    import subprocess

    name = os.path.basename(os.path.realpath(device))
    sys_dir = os.path.realpath(f"/sys/class/block/{name}")
    if not os.path.exists(f"{sys_dir}/partition"):
        return ""
    disk = "/dev/" + os.path.basename(os.path.dirname(sys_dir))
    res = subprocess.run(["sfdisk", "--json", disk], capture_output=True, text=True)
    try:
        table = json.loads(res.stdout)["partitiontable"] if res.returncode == 0 else {}
    except (ValueError, KeyError):
        return ""
    real = os.path.realpath(device)
    for p in table.get("partitions", []):
        if os.path.realpath(p.get("node", "")) == real:
            return p.get("type", "").upper()
    return ""


def is_esp_type(ptype: str) -> bool:
    return ptype.upper() in (ESP, "EF")


def is_loop(disk: str) -> bool:
    return os.path.basename(os.path.realpath(disk)).startswith("loop")


# --- FAT file systems (the ESP) ------------------------------------------------------------------
# A FAT file system is filled without the kernel's vfat driver (which some kernels lack): the
# clone stages its files in a tmpfs mounted where it belongs in the target - named after the
# FAT's device, so that GRUB (which reads mountinfo, then checks the device itself is FAT) accepts
# it as the ESP - and they are then copied onto the FAT with mtools, which reads and writes FAT
# in user space. FAT keeps no owners or modes: the fstab's options give them when it is mounted.
FAT_VFS = ("vfat", "msdos", "fat")
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "LC_ALL": "C", "PATH": os.environ.get("PATH", "")}


def fat_mkfs_argv(device: str, label: str = "EFI") -> list[str]:
    """FAT32, as the UEFI specification asks of an ESP."""
    return ["mkfs.vfat", "-F", "32", "-n", label[:11].upper(), device]


def fat_stage_argv(device: str, path: str) -> list[str]:
    """The staging tmpfs for the FAT on ``device``, mounted on ``path``."""
    return ["mount", "-t", "tmpfs", "-o", "mode=0700", "--", device, path]


def fat_copy_argv(device: str, entries: list[str]) -> list[str]:
    """mcopy of staged ``entries`` (paths) into the root of the FAT on ``device``, recursively,
    keeping times; stops at the first error."""
    return ["mcopy", "-s", "-m", "-Q", "-D", "o", "-i", device, *entries, "::/"]
