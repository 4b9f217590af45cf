"""Where the image goes: the room it needs, the hidden partial file it is written to before
the rename, stale partials of killed runs, and the log of images made (vgbackuplog).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess

# infofiles and streams are imported where used: a level backup needs only partial_marker().

PARTIAL = ".aixsmit-partial-"


def _host() -> str:
    """This host's node name as it may stand in a file name: characters other than letters,
    digits, '.', '_' and '-' become '_' (no '/', no '@')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.uname().nodename) or "_"


def partial_marker() -> str:
    """The marker of a hidden temporary image, ``.aixsmit-partial-HOST@``: OutputFile names the
    file ``.BASENAME<marker>PID-RANDOM``. The host name says whose pid it is, so a folder shared
    by several hosts (NFS) keeps the images other hosts are still writing."""
    return f"{PARTIAL}{_host()}@"


def required_room(include: list[str], structure_only: bool, staged: int) -> int:
    """Bytes an unpacked image of the file systems mounted at ``include`` needs, before the
    walk has counted the entries: they are estimated from the inodes in use; each costs tar a
    header and a pax record (1.5 KB). With ``structure_only`` (savevg -r), only the ``staged``
    information files and the table of contents. A packed image: packed_size()."""
    from .infofiles import fs_facts

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
    from .streams import PACK_LEVEL

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
        from ..safefile import open_own

        fd = open_own(os.path.join(state_path(), BACKUP_LOG))
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
    """Remove temporary images of earlier runs on this host whose process is gone: only names
    marked with this host (``partial_marker``; another host's pid cannot be checked here, and
    a name without a host is left alone), only regular files this user owns (a name another
    user planted is left alone), removed by name in the folder opened once, never followed."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        me = os.geteuid()
        mine = partial_marker()
        for name in os.listdir(dfd):
            if mine not in name:
                continue
            pid = name.split(mine, 1)[1].split("-", 1)[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                st = os.lstat(name, dir_fd=dfd)
                if stat.S_ISREG(st.st_mode) and st.st_uid == me:
                    os.unlink(name, dir_fd=dfd)
            except OSError:
                pass
    finally:
        os.close(dfd)


# --- a destination that is somebody's data (issue: "nothing lost") --------------------------

def _block_family(rdev: int) -> set[int]:
    """A block device and what it is made of or part of: its whole disk (for a partition), its
    partitions, and the devices under a device-mapper or md device, as /sys/dev/block shows."""
    out = {rdev}
    base = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    for sub in ("slaves", "holders"):
        try:
            for name in os.listdir(f"{base}/{sub}"):
                out |= _dev_of(f"/sys/class/block/{name}")
        except OSError:
            pass
    if os.path.exists(f"{base}/partition"):
        out |= _dev_of(os.path.realpath(f"{base}/.."))
    else:
        try:
            real = os.path.realpath(base)
            for name in os.listdir(real):
                if os.path.exists(f"{real}/{name}/partition"):
                    out |= _dev_of(f"{real}/{name}")
        except OSError:
            pass
    return out


def _dev_of(sysdir: str) -> set[int]:
    try:
        with open(f"{sysdir}/dev") as f:
            major, minor = f.read().strip().split(":")
        return {os.makedev(int(major), int(minor))}
    except (OSError, ValueError):
        return set()


def writable_destination(program: str, dest: str, include: list[str]) -> str:
    """The one check every writer of archives makes before it writes (mksysb, savevg and
    sysbackup through the engine, backup by level and so schedule runs, backup by name):
    ``"device"`` or ``"file"`` as :func:`safefile.destination_kind` decides it, after
    :func:`refuse_data` found that writing there destroys nobody's data (``include``: host paths
    of the file systems the archive is made of). AixsmitError (0512-017, one line) otherwise."""
    from ..safefile import destination_kind

    kind = destination_kind(dest, program)
    refuse_data(program, dest, kind, include)
    return kind


def refuse_data(program: str, dest: str, kind: str, include: list[str]) -> None:
    """Raise AixsmitError (one line naming the mount) when writing an image to ``dest`` would
    destroy data: a device that is mounted, is part of a mounted device (its disk, a partition,
    an LVM volume on it) or is a swap area; a file that backs a loop device; an existing file
    inside the file systems being backed up (``include``: their host paths) that is not a
    backup image (an image there is left out of the walk and replaced as usual)."""
    from ..errors import AixsmitError
    from ..fs.mounts import read_mountinfo

    try:
        mounts = read_mountinfo()
    except (OSError, AixsmitError):
        mounts = []
    if kind == "device":
        st = os.stat(dest)
        if not stat.S_ISBLK(st.st_mode):
            return  # a tape
        family = _block_family(st.st_rdev)
        for m in mounts:
            if not m.device.startswith("/dev/"):
                continue
            try:
                mst = os.stat(m.device)
            except OSError:
                continue
            if stat.S_ISBLK(mst.st_mode) and (mst.st_rdev in family or st.st_rdev in _block_family(mst.st_rdev)):
                raise AixsmitError(f"0512-017 {program}: Cannot write to the device {dest}: it holds the file system "
                                   f"mounted at {m.path or m.mount_point} ({m.device}).")
        try:
            with open("/proc/swaps", "rb") as f:
                for line in os.fsdecode(f.read()).splitlines()[1:]:
                    sw = line.split()[0]
                    if sw.startswith("/dev/") and os.path.exists(sw) and os.stat(sw).st_rdev in family:
                        raise AixsmitError(f"0512-017 {program}: Cannot write to the device {dest}: it is in use as "
                                           f"swap ({sw}).")
        except OSError:
            pass
        _refuse_held_device(program, dest)
        return
    try:
        st = os.lstat(dest)
    except OSError:
        return  # a new file
    if not stat.S_ISREG(st.st_mode):
        return  # (a link is replaced by the rename, whatever it leads to)
    # A loop device's backing file: whatever is mounted from it would be overwritten.
    try:
        loops = [n for n in os.listdir("/sys/block") if n.startswith("loop")]
    except OSError:
        loops = []
    for name in loops:
        try:
            with open(f"/sys/block/{name}/loop/backing_file", "rb") as f:
                backing = os.fsdecode(f.read().strip()).removesuffix(" (deleted)")
            bst = os.stat(backing)
        except OSError:
            continue
        if (bst.st_dev, bst.st_ino) == (st.st_dev, st.st_ino):
            where = [m.path or m.mount_point for m in mounts if os.path.basename(os.path.realpath(m.device)) == name]
            used = f"mounted at {where[0]}" if where else "attached"
            raise AixsmitError(f"0512-017 {program}: Cannot write to {dest}: it is the backing file of /dev/{name}, "
                               f"{used}.")
    # The file system the file is on: the deepest mount holding its real path.
    real = os.path.realpath(dest)
    holding = [m.path for m in mounts if m.path and (m.path == "/" or real.startswith(m.path.rstrip("/") + "/"))]
    top = max(holding, key=len, default="")
    if top in include and st.st_size and not _is_image(real) and not _is_archive(real, st):
        raise AixsmitError(f"0512-017 {program}: Cannot write to {dest}: it is a file of {top}, which this image "
                           "backs up, and not a backup image; choose a name outside it.")


def _refuse_held_device(program: str, dest: str) -> None:
    """A disk that is not mounted but still somebody's: held open exclusively (an LVM physical
    volume, a RAID member, swap) or holding a file system or a partition table (blkid)."""
    import errno

    from ..errors import AixsmitError
    from ..fs.crfs import existing_fs

    try:
        os.close(os.open(dest, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise AixsmitError(f"0512-017 {program}: Cannot write to the device {dest}: it is in use (held open by "
                               "the system: LVM, RAID, swap or a mount).")
        return  # tar says why it cannot be written
    held = existing_fs(dest)
    if held:
        what = held if " " in held else f"a {held} file system"
        raise AixsmitError(f"0512-017 {program}: Cannot write to the device {dest}: it holds {what}; wipe it first "
                           f"(wipefs -a {dest}) if its data is no longer wanted.")


def _is_archive(path: str, st: os.stat_result) -> bool:
    """An archive aixsmit wrote before (a level or by-name backup): root's, 0600, a tar."""
    import tarfile

    if st.st_uid != 0 or st.st_mode & 0o077:
        return False
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _is_image(path: str) -> bool:
    from ..errors import AixsmitError
    from .archive import read_info

    try:
        read_info(path, "mksysb")
        return True
    except AixsmitError:
        return False
