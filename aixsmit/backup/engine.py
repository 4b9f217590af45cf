"""mksysb and savevg on Linux: a file list like AIX builds, archived by GNU tar.

The image is a POSIX (pax) tar archive. Its first members are aixsmit's information files
(``./image.data`` or ``./tmp/vgdata/VG/VG.data`` and a copy of fstab), then every file of the
group's mounted file systems, as ``./path``; the table of contents ``backup.toc`` is last.

create_image() runs the steps in turn; each concern has a module of its own, to be read in
this order:
* ``infofiles``: the information files staged for the image's first members;
* ``destination``: the room the image needs, the partial file it is written to, the log;
* ``walk``: which files the image holds, in which order, and the table of contents;
* ``streams``: tar's options, the names fed to it (ListFeed), and with two CPUs a second tar
  whose archive is joined to the first one's (SecondTar, SecondStream, members_end);
* ``stop``: a signal stops the image at the next safe point (request_stop, ImageInterrupted).

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

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import AixsmitError
from ..fs.table import System, used_below
from ..fs.volume_groups import VolumeGroup
from ..jobs.runner import Finished, Job, Output, Tick
from ..osutil import make_temp_dir, remove_tree, which, write_text
from ..state import fsync_dir
from ..safefile import OutputFile
from . import stop
from .destination import (BACKUP_LOG, PARTIAL, clean_stale_partials, log_backup, nearly_full, packed_ratio,
                          packed_size, partial_marker, required_room, space_block, writable_destination)
from .excludes import ExcludeList
from .infofiles import fs_facts, info_member, vgdata_dir
from .infofiles import stage as stage_information
from .stop import ImageInterrupted, request_stop
from .sums import BlockSums, archive_end, trailing_zeros
from .streams import WARNING_RE, ListFeed, SecondTar, tar_options
from .walk import TOC_VERSION, walk

# What callers use (sysbackup, the commands): the rest is each module's own.
__all__ = ["BACKUP_LOG", "EXIT_FAILED", "EXIT_OK", "EXIT_SIGNAL", "EXIT_USAGE_MKSYSB", "EXIT_USAGE_SAVEVG", "PARTIAL",
           "TOC_VERSION", "BackupFailed", "ImageInterrupted", "ImageRequest", "ImageResult", "create_image",
           "request_stop"]

# Exit codes AIX documents for mksysb/savevg (aix-smit.md §3.5).
EXIT_OK, EXIT_USAGE_MKSYSB, EXIT_USAGE_SAVEVG, EXIT_FAILED, EXIT_SIGNAL = 0, 1, 2, 3, 4

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
    pack: bool = True  # packed (zstd) unless -p, as AIX packs unless told not to


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


# A progress line this often (AIX: about once a second); tests ask for more.
PROGRESS_SECONDS = float(os.environ.get("AIXSMIT_PROGRESS_SECONDS") or 1.0)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: ``taskset -c 0`` gives one on a machine
    of two, and a second tar stream would then only add the join's copying to one CPU's
    work), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_chars(pid: int) -> int:
    """Bytes process ``pid`` has read so far (``rchar`` of /proc/PID/io); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            for line in f:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def read_chars_tree(pid: int) -> int:
    """Bytes process ``pid`` and the processes it started (tar, zstd) have read so far."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += read_chars(p)
        todo += children.get(p, [])
    return total


def create_image(req: ImageRequest, emit: Emit) -> ImageResult:
    """Make the image; ``emit`` receives AIX-style output lines. Raises BackupFailed, or
    ImageInterrupted when a signal handler called request_stop()."""
    stop.making()
    try:
        result = _create_image(req, emit)
        stop.done()
        return result
    except BaseException:
        stop.idle()
        raise
    finally:
        stop.forget_groups()


def _read_maps(req: ImageRequest) -> dict[str, str]:
    """-m: where each logical volume lies on its disks, by logical volume name (0512-022 if
    that cannot be read)."""
    from .maps import map_text

    maps: dict[str, str] = {}
    for lv in req.vg.mounted:
        try:
            text = map_text(lv.device)
        except (OSError, ValueError) as exc:
            raise BackupFailed(f"0512-022 {req.program}: An Error occurred creating the Image Data File or\n"
                               f"the Physical Partition Map Files. ({lv.device}: {exc})", EXIT_FAILED)
        if text is not None:
            maps[lv.name] = text
    return maps


def _create_image(req: ImageRequest, emit: Emit) -> ImageResult:
    start = time.monotonic()
    prog = req.program
    vg = req.vg
    dest = os.path.abspath(req.destination)
    if not req.destination.startswith("/"):
        raise BackupFailed(f"0512-006 {prog}: Backup device or file name must start with a '/'.", EXIT_FAILED)
    dest_dir = os.path.dirname(dest)
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
    # "Device or file" by lstat: a name planted in a shared folder (a link to a disk, to
    # /etc/shadow) is replaced, never written through (safefile); and nobody's data is written over.
    try:
        is_device = writable_destination(prog, dest, include) == "device"
    except AixsmitError as exc:
        raise BackupFailed(str(exc), EXIT_FAILED) from None

    when = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    work = make_temp_dir("aixsmit-work-")
    stage = os.path.join(work, "stage")
    os.mkdir(stage)
    out: OutputFile | None = None
    sums: BlockSums | None = None
    tmp = dest
    job: Job | None = None
    feeds: list[ListFeed] = []
    second: SecondTar | None = None
    renamed = False
    try:
        # 1. The information files come first in the image, as on AIX (infofiles); the table
        # of contents, complete only when the walk is, comes last.
        if req.new_data:
            what = "(/image.data) for rootvg" if prog == "mksysb" else f"for volume group {vg.name}"
            emit(f"Creating information file {what}.", "stdout")
            emit("", "stdout")
        elif prog == "mksysb" and not os.path.exists(os.path.join(req.system.root, "image.data")):
            raise BackupFailed(f"0512-004 {prog}: The /image.data file does not exist.  Backup canceled.", EXIT_FAILED)
        emit("Creating list of files to back up.", "stdout")
        staged = stage_information(req, stage, when, _read_maps(req) if req.maps else {}, emit)
        toc_member = f"{vgdata_dir(req)}/backup.toc"
        toc_path = os.path.join(stage, toc_member[2:])

        # 2. Room at the destination (destination), and the new file the image is written
        # to: created here (0600, O_EXCL|O_NOFOLLOW) under a hidden name; tar gets its
        # descriptor, never a name someone else could change.
        if not is_device:
            clean_stale_partials(dest_dir)
            try:
                out = OutputFile(dest, marker=partial_marker())
            except OSError as exc:
                raise BackupFailed(f"0512-017 {prog}: Cannot write to {dest}: {exc.strerror}.", EXIT_FAILED) from None
            tmp = out.temp_path
            required = required_room(include, req.structure_only, len(staged))
            if not req.structure_only:
                for lv in include_lvs:  # --root DIR not a mount point: only what lies below DIR counts
                    if lv.entry.mount.host_mount:
                        _, used, _, inodes = fs_facts(lv.entry.mount.path)
                        below, entries = used_below(lv.entry.mount.path, prune)
                        required += below + 1536 * entries - used - 1536 * inodes
                if req.pack:
                    required = packed_size(required, packed_ratio(include))
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

        # 3. tar starts at once and reads the names while the walk finds them (streams).
        # Packed into a file only: on a disk, zstd could not tell where the image ends and what
        # the device held before begins. savevg -r holds a few small information files: not
        # packed, it keeps its block checksums.
        pack = req.pack and not is_device and not req.structure_only
        if pack and not which("zstd"):
            raise BackupFailed(f"{prog}: zstd is not installed, so the image cannot be packed: install it "
                               "(scripts/install-deps) or give -p for an image that is not packed. Backup canceled.",
                               EXIT_FAILED)
        opts, record = tar_options(req.verbose, req.blocks, is_device, pack)
        if out is not None and not pack:
            # Block checksums of what tar writes (sums). A packed image has zstd's own checksum
            # in every frame instead: a member cannot be appended inside a compressed stream.
            sums = BlockSums(out.fd, margin=record + 2 * 512)
            sums.start()
        # Two tars at once where the machine has the CPUs for it: into a file only, and not
        # with -v, whose one line per file from two tars would interleave. A packed image is
        # one tar whose zstd packs on every CPU (two packed streams cannot be joined in place).
        streams = req.streams or req.system.config.backup_streams or (2 if usable_cpus() >= 2 else 1)
        parallel = streams > 1 and not pack and not is_device and not req.verbose and not req.structure_only
        marker = vgdata_dir(req)
        argv = ["tar", "--create", "--force-local", f"--file={out.child_path if out else dest}", *opts, "-C", stage, *staged, "-C", req.system.root, "-T", "-",
                "-C", stage, marker if parallel else toc_member]
        feeds.append(ListFeed(os.path.join(work, "list")))
        job = Job(argv, batch=req.verbose, die_with_parent=True, tick=PROGRESS_SECONDS, stdin=feeds[0].read_end,
                  pass_fds=(out.fd,) if out else ())
        stop.check_stop()
        job.start()
        stop.add_group(job.proc.pid)
        if parallel:
            # The second tar: directories and half the files, then the table of contents. Its
            # archive follows the first one's last member (the marker directory).
            feeds.append(ListFeed(os.path.join(work, "list2")))
            argv2 = ["tar", "--create", "--force-local", "--file=-", *opts, "-C", req.system.root, "-T", "-", "-C", stage, toc_member]
            second = SecondTar(argv2, feeds[1].read_end, os.path.join(work, "tar2.err"))
            stop.add_group(second.pid)
            second.start()
        for feed in feeds:
            feed.start()
        stop.check_stop()  # a signal that came before the groups were known

        # 4. The walk (walk).
        if req.structure_only:
            write_text(toc_path, TOC_VERSION + "\n")
            count = 0
        else:
            count = walk(req.system.root, include, prune, {dest, tmp, work}, req.excludes, [f.add for f in feeds],
                         toc_path, (info_member(req).encode(), vgdata_dir(req).encode()))
        for feed in feeds:
            feed.finish()
        # The information files, then the marker and/or the TOC; into a file unpacked, the checksums last.
        staged_count = len(staged) + len(feeds) + (1 if sums is not None else 0)
        total = count + staged_count
        emit(f"Backing up {total} files", "stdout")

        # 5. tar's progress and messages, until it ends; then the second stream is joined.
        warnings: list[str] = []
        errors: list[str] = []
        done = 0
        rc = 2

        # Bytes: what the tars have read (their files' data), of what the file systems hold in use.
        # Names alone stall near the end of a tree with a few large files: tar has taken every
        # name and is still reading the last file.
        bytes_total = 0 if req.structure_only else sum(fs_facts(p)[1] for p in include)
        bytes_read: dict[int, int] = {}

        def progress_line() -> None:
            nonlocal done
            if not req.verbose:  # (-v counts tar's lines instead)
                done = len(staged) + sum(f.taken() for f in feeds)
            shown = min(done, total - 1)  # 100% is said once, when the image is complete
            line = f"{shown} of {total} files backed up ({shown * 100 // max(total, 1)}%)"
            if bytes_total:
                for pid in [job.proc.pid] + ([second.pid] if second is not None else []):
                    bytes_read[pid] = max(bytes_read.get(pid, 0), read_chars(pid))
                line += f" {min(sum(bytes_read.values()), bytes_total)} of {bytes_total} bytes"
            emit(line, "stdout")

        def tar_says(text: str) -> None:
            if text:
                (warnings if WARNING_RE.search(text) else errors).append(text)
                emit(text, "stderr")

        for ev in job.events():
            stop.check_stop()
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
        stop.check_stop()
        if second is not None and rc <= 1 and not errors:
            rc = max(rc, second.join(f"/proc/self/fd/{out.fd}", marker, record, errors, emit, tar_says, progress_line,
                                     prog))
        if rc > 1 or errors:
            if not is_device and nearly_full(dest_dir):
                emit(f"{prog}: {dest_dir}: No space left on device: the image did not fit.", "stderr")
            raise BackupFailed(
                f"0512-005 {prog}: Backup Completed.\n\tThe backup command completed with errors.\n"
                "\tThe messages displayed on Standard Error contained additional\n\tinformation.", EXIT_FAILED)

        # 6. The image is complete: on disk, then renamed over the destination.
        done = total
        emit("", "stdout")
        emit(f"{done} of {total} files backed up (100%)", "stdout")  # as AIX says it
        if out is not None:
            # 7. The checksums (sums): an XXH3 per MiB of the image, read back while tar wrote
            # it; only the last blocks are read now. They go in as the image's last member.
            try:
                if sums is not None:
                    from .archive import append_member, sums_member  # (tarfile: not for a packed image)

                    end = archive_end(out.fd, trailing_zeros(toc_path))
                    append_member(out.fd, end, sums_member(toc_member), sums.finish(end), record)
                out.commit()  # fsync, rename over the destination, fsync the folder
            except (AixsmitError, OSError) as exc:
                emit(f"{prog}: {dest}: {getattr(exc, 'strerror', None) or exc}", "stderr")
                raise BackupFailed(
                    f"0512-005 {prog}: Backup Completed.\n\tThe backup command completed with errors.\n"
                    "\tThe messages displayed on Standard Error contained additional\n\tinformation.", EXIT_FAILED)
            renamed = True
        size = os.stat(dest).st_size if not is_device else 0
        status = "WARN" if (rc == 1 or warnings) else "OK"
        log_backup(dest, prog, vg.name, when, size, status)
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
        if second is not None:
            second.stop()
        for feed in feeds:
            feed.stop()
        if sums is not None:
            sums.stop()
        if out is not None:
            if not renamed:
                out.discard()  # only the file created here, whatever is at its name now
            out.close()
        remove_tree(work)
