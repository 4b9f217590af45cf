"""mksysb and savevg on Linux: a file list like AIX builds, archived by GNU tar.

The image is a POSIX (pax) tar archive. Its first members are aixsmit's information files
(``./image.data`` or ``./tmp/vgdata/VG/VG.data`` and a copy of fstab), then every file of the
group's mounted file systems, as ``./path``; the table of contents ``backup.toc`` is last.

Into a file, with two CPUs or more, two tars make it: the first writes the image file and ends
with the directory ``./tmp/vgdata/VG`` (its marker), the second writes into a pipe, and its
archive is joined over the first one's end-of-archive blocks (SecondStream, members_end). The
walk shares the files between them by inode number and gives every directory to the second.

What makes it safe:
* the walk crosses into every mounted file system of the group and into no other mount
  (checked by path, so bind mounts and btrfs subvolumes do not fool it); the destination and
  aixsmit's own work files are never archived;
* tar writes to a hidden temporary name beside the destination, which is renamed over it only
  when tar (both tars, and the join) finished and the data is on disk — a killed or failed
  backup never leaves a file that looks like a complete image;
* a signal never raises in the middle of the work (request_stop): tar is stopped and the
  engine ends at its next safe point;
* files that changed or vanished while being read are warnings (0512-003, exit 0), anything
  else tar reports is a failure (0512-005, exit 3), with tar's own messages on stderr.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import signal
import stat
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from ..errors import AixsmitError
from ..fs.table import System, used_below
from ..fs.volume_groups import VolumeGroup
from . import image_data
from ..jobs.runner import Finished, Job, Output, Tick, orphan_proof, stop_group
from ..osutil import copy_file, grow_pipe, make_temp_dir, remove_tree, which, write_text
from ..state import fsync_dir
from .excludes import ExcludeList

PARTIAL = ".aixsmit-partial-"
FILE_BLOCKS = 128  # 512-byte blocks per write into an image file
TOC_VERSION = "aixsmit-toc 2"  # then kind letter + ./name + NUL, per entry
# With two tar streams, the first takes FIRST_SHARE files in 20 (by inode number). The second
# one's archive costs one more copy (a pipe, memory, then the image) and its tar also has every
# directory; what it holds when the first ends is written while it finishes. 11 in 20 ended the
# two together best on 50,000 small files (10, 11, 12 and 13 tried, eight runs each).
FIRST_SHARE = 11

# Exit codes AIX documents for mksysb/savevg (aix-smit.md §3.5).
EXIT_OK, EXIT_USAGE_MKSYSB, EXIT_USAGE_SAVEVG, EXIT_FAILED, EXIT_SIGNAL = 0, 1, 2, 3, 4

# ACLs (system.posix_acl_*) and SELinux labels (security.selinux) are extended attributes:
# --xattrs-include=* stores them raw, numeric ids and all, at a third of what --acls and
# --selinux cost per file (measured: bench/bench_mksysb.py). --selinux is added where SELinux
# is enabled, for the label tar reads through libselinux.
TAR_CREATE_OPTS = [
    "--format=posix", "--xattrs", "--xattrs-include=*", "--sparse",
    "--ignore-failed-read", "--no-recursion", "--null", "--verbatim-files-from",
]
# tar's warnings for files changing under it: the backup still completed (0512-003).
WARNING_RE = re.compile(
    r"file changed as we read it|File removed before we read it|Cannot stat: No such file|"
    r"file shrank|socket ignored|Cannot open: No such file|Directory is new|Warning:"
)


Emit = Callable[[str, str], None]  # (line, "stdout" | "stderr")


@dataclass
class ImageRequest:
    program: str  # mksysb | savevg
    vg: VolumeGroup
    system: System
    destination: str  # host path (not re-rooted); a file or a device
    new_data: bool = True  # -i: write the information file anew
    maps: bool = False  # -m
    excludes: ExcludeList = field(default_factory=ExcludeList)
    exclude_fs: tuple[str, ...] = ()  # -x FILE: mount points to leave out
    verbose: bool = False  # -v
    blocks: int | None = None  # -b: 512-byte blocks per write
    structure_only: bool = False  # savevg -r
    check_space: bool = True
    streams: int = 0  # tar processes: 0 = the config's backup_streams, else 2 with 2 CPUs or more


@dataclass
class ImageResult:
    path: str
    files: int
    bytes: int
    status: str  # OK, WARN
    warnings: list[str]
    seconds: float


class BackupFailed(AixsmitError):
    pass


class ImageInterrupted(AixsmitError):
    """A signal stopped the image (the caller reports 0512-007)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)  # SIGTERM, as sysbackup reports it
        self.signum = signum


# --- stopping on a signal ------------------------------------------------------------------
#
# A signal handler that raises at once can raise in the middle of a ``with lock:`` (after the
# lock is taken, before the block is entered): the lock is never released, and the threads
# that feed tar wait for it for ever. So while an image is being made, a handler only asks for
# the stop: tar's process groups get SIGTERM at once, and create_image raises ImageInterrupted
# at its next safe point (the walk checks once per chunk of names, the wait for tar at least
# four times a second).

_state = "idle"  # making (an image is being made), done (it is complete), idle
_stop_signal: int | None = None
_groups: list[int] = []


def request_stop(signum: int) -> bool:
    """For a signal handler. True: an image is being made and will stop (raise
    ImageInterrupted) shortly, or it is complete and there is nothing left to stop (the command
    is ending anyway: a complete image is not reported as an abnormal end); False: no image is
    being made, and the handler should act itself."""
    global _stop_signal
    if _state == "idle":
        return False
    if _state == "done":
        return True
    _stop_signal = signum
    for pgid in list(_groups):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
    return True


def _check_stop() -> None:
    if _stop_signal is not None:
        raise ImageInterrupted(_stop_signal)


# --- the walk -----------------------------------------------------------------------------

class ListFeed:
    """The walk's list of names on its way to tar (``-T -``).

    The walk hands over chunks of NUL-terminated names; they go to a work file at once, and a
    pump thread copies them from there into tar's input pipe as fast as tar reads. So tar starts
    archiving while the walk is still going, and the walk never waits for tar. ``taken()`` says
    how many names tar has read so far: the progress count, without a line of output per file.
    """

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.read_end, self.write_end = os.pipe()
        os.set_inheritable(self.read_end, False)
        os.set_blocking(self.write_end, False)
        grow_pipe(self.write_end)  # room for 20,000 names or so
        self.size = 0  # bytes in the work file
        self.names = 0  # names in the work file
        self.fed = 0  # bytes copied into the pipe
        self.done = False  # the walk has ended: the pipe closes when everything is fed
        self.stopped = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, name="aixsmit-list-feed", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def add(self, chunk: bytes, names: int) -> None:
        view = memoryview(chunk)
        offset = self.size
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        with self.cond:
            self.size, self.names = offset, self.names + names
            self.cond.notify()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify()

    def _pump(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.fed == self.size and not self.done and not self.stopped:
                        self.cond.wait()
                    if self.stopped or (self.fed == self.size and self.done):
                        return
                    upto = self.size
                while self.fed < upto:
                    data = os.pread(self.fd, min(upto - self.fed, 1 << 20), self.fed)
                    # Large writes, few of them: each one may have to wait for the GIL while
                    # the walk runs. Non-blocking, so ``fed`` counts exactly what is in the
                    # pipe, and a full pipe is waited for with select.
                    view = memoryview(data)
                    while view:
                        try:
                            n = os.write(self.write_end, view)
                        except BlockingIOError:
                            select.select([], [self.write_end], [])
                            continue
                        view = view[n:]
                        self.fed += n
        except OSError:
            pass  # tar has gone (broken pipe) or the feed was stopped: it reads no more
        finally:
            os.close(self.write_end)

    def taken(self) -> int:
        """Names tar has read: what was fed less what still waits in the pipe (to within the
        length of a few names, as names are counted by their average length)."""
        try:
            waiting = struct.unpack("i", fcntl.ioctl(self.read_end, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            waiting = 0
        size = self.size
        return self.names * max(0, self.fed - waiting) // size if size else 0

    def stop(self) -> None:
        """End the pump (also when tar has stopped reading) and free the descriptors."""
        with self.cond:
            self.stopped = True
            self.cond.notify()
        if self.read_end >= 0:
            os.close(self.read_end)  # a pump stuck on a full pipe gets EPIPE now
            self.read_end = -1
        if self.thread.is_alive():
            self.thread.join()
        elif self.thread.ident is None:
            os.close(self.write_end)  # never started
        os.close(self.fd)


class SecondStream:
    """The second tar's archive on its way into the image, right after the first one's members.

    The second tar writes to a pipe. While the first tar is still writing the image, what comes
    through the pipe is kept in memory, up to ``cap`` bytes (then the pipe fills and the second
    tar waits). When the first tar has finished, ``place()`` says where its last member ends: the
    kept data is written there, over its end-of-archive blocks, and the rest is moved from the
    pipe into the file inside the kernel (splice). Nothing is written twice to the disk."""

    def __init__(self, cap: int):
        self.read_end, self.write_end = os.pipe()  # the write end is the second tar's stdout
        os.set_inheritable(self.read_end, False)
        grow_pipe(self.read_end)
        self.cap = cap
        self.held = 0
        self.fd = -1
        self.offset = 0
        self.end = -1  # where the image ends once everything is written
        self.error: OSError | None = None
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._run, name="aixsmit-second-stream", daemon=True)

    def start(self) -> None:
        os.close(self.write_end)  # the tar has its copy
        self.write_end = -1
        self.thread.start()

    def place(self, fd: int, offset: int) -> None:
        self.fd, self.offset = fd, offset
        self.go.set()

    def abandon(self) -> None:
        self.go.set()  # fd stays -1: the thread drops what it holds and ends

    def _run(self) -> None:
        chunks: list[bytes] = []
        ended = False
        try:
            while not self.go.is_set():
                if self.held >= self.cap:
                    self.go.wait()
                    break
                if not select.select([self.read_end], [], [], 0.1)[0]:
                    continue
                chunk = os.read(self.read_end, 1 << 20)
                if not chunk:
                    ended = True
                    self.go.wait()
                    break
                chunks.append(chunk)
                self.held += len(chunk)
            if self.fd < 0:
                return
            pos = self.offset
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = os.pwrite(self.fd, view, pos)
                    view, pos = view[n:], pos + n
            chunks.clear()
            spliced = True
            while not ended:
                n = -1
                if spliced:
                    try:
                        n = os.splice(self.read_end, self.fd, 1 << 20, offset_dst=pos)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                            raise
                        spliced = False  # a file system splice cannot write to
                if n < 0:
                    chunk = os.read(self.read_end, 1 << 20)
                    n = os.pwrite(self.fd, chunk, pos) if chunk else 0
                    if chunk and n < len(chunk):
                        raise OSError(errno.ENOSPC, "short write")
                if not n:
                    break
                pos += n
            self.end = pos
        except OSError as exc:
            self.error = exc

    def close(self) -> None:
        self.abandon()
        if self.thread.is_alive():
            os.close(self.read_end)  # a tar still writing gets EPIPE; a splice in progress ends
            self.read_end = -1
            self.thread.join()
        for fd in (self.read_end, self.write_end):
            if fd >= 0:
                os.close(fd)
        self.read_end = self.write_end = -1


def members_end(fd: int, marker: bytes, record: int) -> int:
    """Where the last member of the tar archive in ``fd`` ends, i.e. where its end-of-archive
    blocks start. The archive's last member must be the directory ``marker``: its header block
    is never all zeros, so the last block that is not all zeros is that header (a file's data
    could end in zero blocks; a directory has none). Checked, not assumed: anything else is an
    error, never a joined image that would read wrong."""
    size = os.fstat(fd).st_size
    span = min(size, record + 4 * 512) // 512 * 512
    tail = os.pread(fd, span, size - span)
    for at in range(span - 512, -1, -512):
        block = tail[at:at + 512]
        if block.count(0) == 512:
            continue
        name = block[:100].rstrip(b"\0").rstrip(b"/")
        chksum = block[148:156].strip(b" \0")
        summed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if (block[156:157] == b"5" and block[257:262] == b"ustar" and name == marker.rstrip(b"/")
                and chksum and int(chksum, 8) == summed):
            return size - span + at + 512
        break
    raise OSError(errno.EIO, "the first tar stream does not end with its marker member")


def walk(root: str, include: list[str], prune: set[str], skip: set[str], excludes: ExcludeList,
         sinks: list[Callable[[bytes, int], None]], toc_path: str, skip_names: tuple[bytes, ...] = ()) -> int:
    """Hand the ``sinks`` the backup list, in chunks of NUL-terminated ``./names`` (and how
    many names each holds), and write the table of contents: every entry under the ``include``
    mount points (absolute host paths), not descending into ``prune`` (other mounts: their
    mount point directory is kept), leaving out ``skip`` (the destination, work files) and
    what ``excludes`` matches. Returns the number of names.

    With two sinks (two tar streams, the second one's archive following the first's), every
    directory goes to the last one, so a restore sets a directory's owner, mode and times after
    everything the first stream put in it; other entries are shared by inode number (the one
    readdir gives, without a stat), so all names of a hard-linked file reach the same tar.
    (Where readdir's inode numbers are not the file's own, as on some overlay mounts, two names
    of one file may reach different tars: both are then restored, with the same data, as two
    files instead of a link.)"""
    broot = os.fsencode(root.rstrip("/") or "/")
    bprune = {os.fsencode(p) for p in prune}
    # Names to leave out are compared as absolute host paths: one set lookup per entry.
    bskip = {os.fsencode(p) for p in skip}
    for n in skip_names:
        bskip.add((broot.rstrip(b"/") + n[1:]) if n.startswith(b"./") else n)
    count = 0
    seen_dirs: set[bytes] = set()
    exclude = excludes.excludes if excludes else None
    cut = len(broot) if broot != b"/" else 0
    seg_of = (lambda ino: 0) if len(sinks) == 1 else (lambda ino: 0 if ino % 20 < FIRST_SHARE else 1)
    bufs = [bytearray() for _ in sinks]
    pending = [0] * len(sinks)
    last = len(sinks) - 1
    with open(toc_path, "wb", buffering=1 << 20) as toc:
        toc.write(TOC_VERSION.encode() + b"\n")
        toc_write = toc.write

        def hand_over(seg: int) -> None:
            # Small chunks (32 KB of names): tar starts on the first ones at once.
            _check_stop()
            sinks[seg](bytes(bufs[seg]), pending[seg])
            bufs[seg].clear()
            pending[seg] = 0

        def add(kind: bytes, path: bytes, seg: int = last) -> None:
            nonlocal count
            rel = b"." + path[cut:]
            bufs[seg] += rel + b"\0"
            toc_write(kind + rel + b"\0")
            count += 1
            pending[seg] += 1
            if len(bufs[seg]) >= 1 << 15:
                hand_over(seg)

        # What to skip and prune, as ./names: the walk works on ./names only.
        def under_root(paths: set[bytes]) -> set[bytes]:
            return {b"." + q[cut:] for q in paths if q.startswith(broot) and (cut == 0 or q[cut:cut + 1] == b"/")}

        rel_skip, rel_prune = under_root(bskip), under_root(bprune)

        def excluded(rel: bytes) -> bool:
            return rel in rel_skip or (exclude is not None and exclude(os.fsdecode(rel)))

        # Walk each included mount point once (one below another is walked as part of it).
        # Directories between the root and a mount point (./srv for a group holding /srv/app)
        # are listed too, so a restore recreates them with their owner and mode.
        walked: list[bytes] = []
        for btop in sorted({os.fsencode(i) for i in include}, key=len):
            if any(btop.startswith(t.rstrip(b"/") + b"/") for t in walked):
                continue
            walked.append(btop)
            chain, parent = [], btop
            while len(parent) > len(broot):
                parent = os.path.dirname(parent)
                if len(parent) > len(broot) and parent not in seen_dirs:
                    chain.append(parent)
            for d in reversed(chain):
                seen_dirs.add(d)
                add(b"d", d)
            if not excluded(b"." + btop[cut:]):
                add(b"d", btop)
            # Depth first, each directory's contents right after it (as tar's own recursion
            # orders them), so a restore sets every directory's times after filling it.
            # (The hot loop of a backup: one pass per entry, locals only, files inlined.)
            try:
                stack = [(os.scandir(btop), (b"." + btop[cut:]).rstrip(b"/") + b"/")]
            except OSError:
                continue
            buf0, buf_last = bufs[0], bufs[last]
            while stack:
                it, prefix = stack[-1]
                ent = next(it, None)
                if ent is None:
                    stack.pop()[0].close()
                    continue
                rel = prefix + ent.name  # ./path: what tar, the TOC and the exclude list see
                if excluded(rel):
                    continue
                try:
                    if ent.is_file(follow_symlinks=False):
                        rel += b"\0"
                        toc_write(b"f" + rel)
                        seg = seg_of(ent.inode())
                        buf = buf0 if seg == 0 else buf_last
                        buf += rel
                        count += 1
                        pending[seg] += 1
                        if len(buf) >= 1 << 15:
                            hand_over(seg)
                    elif ent.is_dir(follow_symlinks=False):
                        add(b"d", ent.path)
                        if rel not in rel_prune:  # another mount: keep its mount point, not its contents
                            try:
                                stack.append((os.scandir(ent.path), rel + b"/"))
                            except OSError:
                                pass  # vanished or unreadable: tar will say so
                    elif ent.is_symlink():
                        add(b"l", ent.path, seg_of(ent.inode()))
                    else:
                        mode = ent.stat(follow_symlinks=False).st_mode
                        if stat.S_ISSOCK(mode):
                            continue  # sockets cannot be archived (AIX skips them too)
                        add(b"c" if stat.S_ISCHR(mode) else b"b" if stat.S_ISBLK(mode) else b"p", ent.path,
                            seg_of(ent.inode()))
                except OSError:
                    continue
    for seg, buf in enumerate(bufs):
        if buf:
            sinks[seg](bytes(buf), pending[seg])
    return count


# --- information files -------------------------------------------------------------------

def _uname() -> str:
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


def _fs_facts(path: str) -> tuple[int, int, int, int]:
    """(size, used, block size) in bytes of the file system at ``path``, and its inodes in use."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0, 0, 0, 0
    return (st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_frsize,
            max(0, st.f_files - st.f_ffree))


def _uuid(system: System, device: str) -> str:
    if system.host.name != "linux" or not device.startswith("/dev/"):
        return ""
    from ..host.linux import device_uuid

    return device_uuid(device)


def map_member(req: ImageRequest, lv_name: str) -> str:
    """Where -m puts a logical volume's map in the image (AIX: /tmp/vgdata/rootvg/hd4.map)."""
    return f"{vgdata_dir(req)}/{lv_name.replace('/', '_')}.map"


def information_file(req: ImageRequest, when: str, mapped: set[str] = frozenset()) -> str:
    """``image.data`` (rootvg) or ``VG.data`` in AIX's stanza format, with Linux facts added.
    ``mapped``: the logical volumes with a map file (-m)."""
    vg = req.vg
    mounted = vg.mounted
    uservgs = " ".join(g for g in req.system.config.volume_groups) or ""
    stanzas: image_data.Stanzas = [
        ("image_data", {
            "IMAGE_TYPE": "tar",
            "DATE_TIME": when,
            "UNAME_INFO": _uname(),
            "PRODUCT_TAPE": "no",
            "USERVG_LIST": uservgs,
            "PLATFORM": req.system.host.name,
            "BACKUP_PROGRAM": f"aixsmit {req.program}",
            "VG_DATA_ONLY": "yes" if req.structure_only else "no",
            "ROOT": req.system.root,
        }),
        ("logical_volume_policy", {"SHRINK": "no", "EXACT_FIT": "no"}),
        ("ils_data", {"LANG": os.environ.get("LANG", "C")}),
        ("vg_data", {
            "VGNAME": vg.name,
            "PPSIZE": str(vg.pp_size_mb),
            "VARYON": "yes",
            "VG_SOURCE_DISK_LIST": " ".join(sorted({lv.device for lv in mounted if lv.device})),
            "LVM_VGNAME": vg.lvm_name,
        }),
    ]
    for lv in mounted:
        size, used, bsize, _ = _fs_facts(lv.entry.mount.path)
        stanzas.append(("lv_data", {
            "VOLUME_GROUP": vg.name,
            "LOGICAL_VOLUME": lv.name,
            "TYPE": lv.type,
            "LPs": str(lv.lps),
            "MOUNT_POINT": lv.mount_point,
            "MAPFILE": map_member(req, lv.name)[1:] if lv.name in mapped else "",
        }))
        stanzas.append(("fs_data", {
            "FS_NAME": lv.mount_point,
            "FS_SIZE": str(size // 512),
            "FS_MIN_SIZE": str(used // 512),
            "FS_LV": lv.device,
            "FS_FS": str(bsize),
            "FS_VFS": lv.type,
            "FS_UUID": _uuid(req.system, lv.device),
            "FS_OPTIONS": ",".join(lv.entry.mount.options),
            "FS_SIZE_BYTES": str(size),
            "FS_USED_BYTES": str(used),
        }))
    if req.program == "savevg":
        stanzas.append(("post_restvg", {"RESTVG_FILE": ""}))
    else:
        stanzas.append(("post_install_data", {"BOSINST_FILE": ""}))
    cmd = "mkszfile" if req.program == "mksysb" else f"mkvgdata {vg.name}"
    return image_data.dump(stanzas, header=f"Command used for {cmd}: aixsmit cmd {req.program}")


def info_member(req: ImageRequest) -> str:
    return "./image.data" if req.program == "mksysb" else f"./tmp/vgdata/{req.vg.name}/{req.vg.name}.data"


def vgdata_dir(req: ImageRequest) -> str:
    return f"./tmp/vgdata/{req.vg.name}"


# --- running tar --------------------------------------------------------------------------

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


def _log_backup(dest: str, prog: str, vg: str, when: str, size: int, status: str) -> None:
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


def _memory_cap() -> int:
    """How much of the second tar stream may wait in memory for the first: a quarter of the
    memory available, at most 1 GB."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return min(1 << 30, int(line.split()[1]) * 1024 // 4)
    except (OSError, ValueError, IndexError):
        pass
    return 256 << 20


def _nearly_full(directory: str) -> bool:
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


def create_image(req: ImageRequest, emit: Emit) -> ImageResult:
    """Make the image; ``emit`` receives AIX-style output lines. Raises BackupFailed, or
    ImageInterrupted when a signal handler called request_stop()."""
    global _state, _stop_signal
    _state, _stop_signal = "making", None
    try:
        result = _create_image(req, emit)
        _state = "done"
        return result
    except BaseException:
        _state = "idle"
        raise
    finally:
        _groups.clear()


def _create_image(req: ImageRequest, emit: Emit) -> ImageResult:
    start = time.monotonic()
    prog = req.program
    vg = req.vg
    dest = os.path.abspath(req.destination)
    if not req.destination.startswith("/"):
        raise BackupFailed(f"0512-006 {prog}: Backup device or file name must start with a '/'.", EXIT_FAILED)
    is_device = os.path.exists(dest) and (stat.S_ISCHR(os.stat(dest).st_mode) or stat.S_ISBLK(os.stat(dest).st_mode))
    dest_dir = os.path.dirname(dest)
    if not is_device and not os.path.isdir(dest_dir):
        raise BackupFailed(f"0512-017 {prog}: Cannot write to the device {dest}.\n\t\t Either write protected or in use. "
                           f"(The directory {dest_dir} does not exist.)", EXIT_FAILED)
    mounted = vg.mounted
    skip_fs = set(req.exclude_fs)
    include_lvs = [lv for lv in mounted if lv.mount_point not in skip_fs]
    if not include_lvs:
        raise BackupFailed(f"0512-009 {prog}: Invalid or missing Volume Group Name. ({vg.name} has no mounted file system to back up.)",
                           EXIT_FAILED)
    include = [lv.entry.mount.path for lv in include_lvs]
    include_set = set(include)
    # Every other mount below the root is pruned: its mount point directory stays, its contents do not.
    prune = {e.mount.path for e in req.system.table()} - include_set

    when = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    work = make_temp_dir("aixsmit-work-")
    stage = os.path.join(work, "stage")
    os.mkdir(stage)
    tmp = os.path.join(dest_dir, f".{os.path.basename(dest)}{PARTIAL}{os.getpid()}") if not is_device else dest
    job: Job | None = None
    feeds: list[ListFeed] = []
    second: SecondStream | None = None
    proc2: subprocess.Popen | None = None
    renamed = False
    try:
        if req.new_data:
            what = "(/image.data) for rootvg" if prog == "mksysb" else f"for volume group {vg.name}"
            emit(f"Creating information file {what}.", "stdout")
            emit("", "stdout")
        elif prog == "mksysb" and not os.path.exists(os.path.join(req.system.root, "image.data")):
            raise BackupFailed(f"0512-004 {prog}: The /image.data file does not exist.  Backup canceled.", EXIT_FAILED)
        emit("Creating list of files to back up.", "stdout")
        vgdir = os.path.join(stage, vgdata_dir(req)[2:])
        os.makedirs(vgdir)
        # The information files come first in the image, as on AIX; the table of contents,
        # complete only when the walk is, comes last.
        info_rel = info_member(req)[2:]
        info_path = os.path.join(stage, info_rel)
        os.makedirs(os.path.dirname(info_path), exist_ok=True)
        maps: dict[str, str] = {}
        if req.maps:
            # -m: where each logical volume lies on its disks (0512-022 if that cannot be read).
            from .maps import map_text

            for lv in vg.mounted:
                try:
                    text = map_text(lv.device)
                except (OSError, ValueError) as exc:
                    raise BackupFailed(f"0512-022 {prog}: An Error occurred creating the Image Data File or\n"
                                       f"the Physical Partition Map Files. ({lv.device}: {exc})", EXIT_FAILED)
                if text is not None:
                    maps[lv.name] = text
        if req.new_data or prog == "savevg":
            write_text(info_path, information_file(req, when, set(maps)))
        else:
            copy_file(os.path.join(req.system.root, "image.data"), info_path)
        fstab = os.path.join(req.system.root, "etc", "fstab")
        staged = [info_member(req)]
        if os.path.isfile(fstab):
            copy_file(fstab, os.path.join(vgdir, "fstab"))
            staged.append(f"{vgdata_dir(req)}/fstab")
        if req.program == "savevg" and vg.source == "lvm" and vg.lvm_name and which("vgcfgbackup"):
            # LVM's own description of the group (PVs, LVs, extents), for vgcfgrestore.
            res = subprocess.run(["vgcfgbackup", "-f", os.path.join(vgdir, f"{vg.name}.vgcfg"), vg.lvm_name],
                                 capture_output=True, text=True)
            if res.returncode == 0:
                staged.append(f"{vgdata_dir(req)}/{vg.name}.vgcfg")
            else:
                emit(f"{prog}: vgcfgbackup {vg.lvm_name} failed: {res.stderr.strip()}", "stderr")
        for name, text in maps.items():
            member = map_member(req, name)
            write_text(os.path.join(stage, member[2:]), text)
            staged.append(member)
        toc_member = f"{vgdata_dir(req)}/backup.toc"
        toc_path = os.path.join(vgdir, "backup.toc")

        if not is_device:
            clean_stale_partials(dest_dir)
            # Before the walk has counted them, the entries are estimated from the inodes in use;
            # each costs tar a header and a pax record (1.5 KB).
            required = sum(used + 1536 * inodes for _, used, _, inodes in map(_fs_facts, include))
            for lv in include_lvs:  # --root DIR not a mount point: only what lies below DIR counts
                if lv.entry.mount.host_mount:
                    _, used, _, inodes = _fs_facts(lv.entry.mount.path)
                    below, entries = used_below(lv.entry.mount.path, prune)
                    required += below + 1536 * entries - used - 1536 * inodes
            if req.structure_only:
                required = 1536 * (len(staged) + 1)
            st = os.statvfs(dest_dir)
            available = st.f_bavail * st.f_frsize
            # A destination file being replaced frees its space only after the rename.
            for line in space_block(required, available):
                emit(line, "stdout")
            if req.check_space and required > available:
                raise BackupFailed(
                    f"{prog}: There is not enough space in {dest_dir} for the backup image: "
                    f"{required // (1024 * 1024) + 1} MB are needed and {available // (1024 * 1024)} MB are available. "
                    "Backup canceled.", EXIT_FAILED)
            emit(f"0512-039 {prog}: WARNING: {dest} does not appear to be a tape device and", "stdout")
            emit("\twill NOT have a bootable image.", "stdout")
            emit("", "stdout")

        # tar starts at once and reads the names while the walk finds them (ListFeed).
        opts = list(TAR_CREATE_OPTS)
        if req.verbose:
            opts += ["--verbose", "--quoting-style=escape"]
        if os.path.exists("/sys/fs/selinux/enforce"):
            opts.append("--selinux")
        if req.blocks:
            opts.append(f"--blocking-factor={req.blocks}")
        elif not is_device:
            # 64 KB records into a file: a tenth of the writes of tar's 10 KB default (measured
            # 5-8% faster). A tape keeps the drive's usual block size unless -b says otherwise.
            opts.append(f"--blocking-factor={FILE_BLOCKS}")
        record = 512 * (req.blocks or (FILE_BLOCKS if not is_device else 20))
        # Two tars at once where the machine has the CPUs for it: into a file only, and not
        # with -v, whose one line per file from two tars would interleave.
        streams = req.streams or req.system.config.backup_streams or (2 if (os.cpu_count() or 1) >= 2 else 1)
        parallel = streams > 1 and not is_device and not req.verbose and not req.structure_only
        marker = vgdata_dir(req)
        argv = ["tar", "--create", f"--file={tmp}", *opts, "-C", stage, *staged, "-C", req.system.root, "-T", "-",
                "-C", stage, marker if parallel else toc_member]
        feeds.append(ListFeed(os.path.join(work, "list")))
        job = Job(argv, batch=req.verbose, die_with_parent=True, tick=1.0, stdin=feeds[0].read_end)
        _check_stop()
        job.start()
        _groups.append(job.proc.pid)
        if parallel:
            # The second tar: directories and half the files, then the table of contents. Its
            # archive follows the first one's last member (the marker directory).
            feeds.append(ListFeed(os.path.join(work, "list2")))
            second = SecondStream(_memory_cap())
            argv2 = ["tar", "--create", "--file=-", *opts, "-C", req.system.root, "-T", "-", "-C", stage, toc_member]
            argv2, preexec = orphan_proof(argv2)
            with open(os.path.join(work, "tar2.err"), "wb") as err2:
                proc2 = subprocess.Popen(argv2, stdin=feeds[1].read_end, stdout=second.write_end, stderr=err2,
                                         start_new_session=True, preexec_fn=preexec)
            _groups.append(proc2.pid)
            second.start()
        for feed in feeds:
            feed.start()
        _check_stop()  # a signal that came before the groups were known
        if req.structure_only:
            write_text(toc_path, TOC_VERSION + "\n")
            count = 0
        else:
            count = walk(req.system.root, include, prune, {dest, tmp, work}, req.excludes, [f.add for f in feeds],
                         toc_path, (info_member(req).encode(), vgdata_dir(req).encode()))
        for feed in feeds:
            feed.finish()
        staged_count = len(staged) + len(feeds)  # the information files, then the marker and/or the TOC
        total = count + staged_count
        emit(f"Backing up {total} files", "stdout")
        warnings: list[str] = []
        errors: list[str] = []
        done = 0
        rc = 2

        def progress_line() -> None:
            nonlocal done
            if not req.verbose:  # (-v counts tar's lines instead)
                done = len(staged) + sum(f.taken() for f in feeds)
            if done < total:
                emit(f"{done} of {total} files backed up ({done * 100 // max(total, 1)}%)", "stdout")

        def tar_says(text: str) -> None:
            if text:
                (warnings if WARNING_RE.search(text) else errors).append(text)
                emit(text, "stderr")

        for ev in job.events():
            _check_stop()
            if isinstance(ev, Output):
                if ev.stream == "stdout":
                    done += len(ev.lines)  # -v: tar names each member on a line of its own
                    for line in ev.lines:
                        emit("a " + line, "stdout")
                else:
                    for text in ev.lines:
                        tar_says(text)
            elif isinstance(ev, Tick):
                progress_line()
            elif isinstance(ev, Finished):
                rc = ev.returncode
        _check_stop()
        if second is not None and proc2 is not None and rc <= 1 and not errors:
            fd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    second.place(fd, members_end(fd, os.fsencode(marker), record))
                except OSError as exc:
                    # Not joined: the second tar is stopped below (finally), the image removed.
                    errors.append(f"{prog}: {tmp}: {exc.strerror or exc}")
                    emit(errors[-1], "stderr")
                else:
                    # The copy ends when the second tar closes its output, i.e. as it exits.
                    # (Popen.wait with a timeout polls in sleeps of up to 50 ms; join does not.)
                    ticked = time.monotonic()
                    while second.thread.is_alive():
                        second.thread.join(0.25)
                        _check_stop()
                        if second.thread.is_alive() and time.monotonic() - ticked >= 1.0:
                            ticked = time.monotonic()
                            progress_line()
                    if second.error is not None and proc2.poll() is None:
                        # The copy failed (no room, say): nothing reads the second tar's output
                        # any more, so it would wait on its pipe for ever.
                        stop_group(proc2.pid, 3.0, alive=lambda: proc2.poll() is None)
                    proc2.wait()
                    _check_stop()
                    rc = max(rc, proc2.returncode if proc2.returncode >= 0 else 2)
                    with open(os.path.join(work, "tar2.err"), "rb") as err2:
                        for text in err2.read().decode("utf-8", "replace").splitlines():
                            tar_says(text)
                    if second.error is not None or second.end < 0:
                        why = second.error.strerror or second.error if second.error else "the second stream was not written"
                        errors.append(f"{prog}: {tmp}: {why}")
                        emit(errors[-1], "stderr")
                    elif not errors:
                        os.ftruncate(fd, second.end)
                        os.fsync(fd)
            finally:
                os.close(fd)
        if rc > 1 or errors:
            if not is_device and _nearly_full(dest_dir):
                emit(f"{prog}: {dest_dir}: No space left on device: the image did not fit.", "stderr")
            raise BackupFailed(
                f"0512-005 {prog}: Backup Completed.\n\tThe backup command completed with errors.\n"
                "\tThe messages displayed on Standard Error contained additional\n\tinformation.", EXIT_FAILED)
        done = total
        emit("", "stdout")
        emit(f"{done} of {total} files backed up (100%)", "stdout")
        if not is_device:
            if second is None:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
            renamed = True
            fsync_dir(dest_dir)
        size = os.stat(dest).st_size if not is_device else 0
        status = "WARN" if (rc == 1 or warnings) else "OK"
        _log_backup(dest, prog, vg.name, when, size, status)
        if status == "WARN":
            emit(f"0512-003 {prog} may not have been able to archive some files.", "stdout")
            emit("The messages displayed on the Standard Error contained additional", "stdout")
            emit("information.", "stdout")
        else:
            emit(f"0512-038 {prog}: Backup Completed Successfully.", "stdout")
        return ImageResult(dest, total, size, status, warnings, time.monotonic() - start)
    finally:
        if job is not None:
            job.cancel()  # nothing when tar has ended; TERM, then KILL, its group if not
        if proc2 is not None and proc2.poll() is None:
            stop_group(proc2.pid, 3.0, alive=lambda: proc2.poll() is None)
        if second is not None:
            second.close()
        for feed in feeds:
            feed.stop()
        if not is_device and not renamed:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        remove_tree(work)
