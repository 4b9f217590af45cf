"""The tar streams: how tar is asked to write an image, the names fed to it, and the second
stream joined to the first.

Into a file, with two CPUs or more, two tars make the image: the first writes the image file
and ends with the directory ``./tmp/vgdata/VG`` (its marker), the second writes into a pipe
(SecondTar), and its archive is joined over the first one's end-of-archive blocks
(SecondStream, members_end). Each tar reads its names from the walk through a ListFeed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable

from ..jobs.runner import orphan_proof, stop_group
from ..osutil import grow_pipe
from .stop import check_stop

FILE_BLOCKS = 128  # 512-byte blocks per write into an image file

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


# Packing (AIX's word; -p turns it off): the whole archive through zstd at its default level,
# on every CPU (-T0), as tar -I 'zstd -T0' does. One stream of zstd frames: GNU tar and
# archive.open_image_stream read it back; a listing unpacks it all (at several hundred MB/s).
PACK_LEVEL = 3
PACK_PROGRAM = f"zstd -{PACK_LEVEL} -T0 -q"


def tar_options(verbose: bool, blocks: int | None, is_device: bool, pack: bool = False) -> tuple[list[str], int]:
    """tar's options for writing an image (``pack``: through PACK_PROGRAM), and the record size
    in bytes they give."""
    opts = list(TAR_CREATE_OPTS)
    if pack:
        opts.append(f"--use-compress-program={PACK_PROGRAM}")
    if verbose:
        opts += ["--verbose", "--quoting-style=escape"]
    if os.path.exists("/sys/fs/selinux/enforce"):
        opts.append("--selinux")
    if blocks:
        opts.append(f"--blocking-factor={blocks}")
    elif not is_device:
        # 64 KB records into a file: a tenth of the writes of tar's 10 KB default (measured
        # 5-8% faster). A tape keeps the drive's usual block size unless -b says otherwise.
        opts.append(f"--blocking-factor={FILE_BLOCKS}")
    return opts, 512 * (blocks or (FILE_BLOCKS if not is_device else 20))


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


def memory_cap() -> int:
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


class SecondTar:
    """The second tar: its process (in a process group of its own, ``pid``), its archive on the
    way into the image (``stream``), and its messages (kept in ``err_path`` until the join)."""

    def __init__(self, argv: list[str], stdin: int, err_path: str):
        self.stream = SecondStream(memory_cap())
        self.err_path = err_path
        argv, preexec = orphan_proof(argv)
        try:
            with open(err_path, "wb") as err:
                self.proc = subprocess.Popen(argv, stdin=stdin, stdout=self.stream.write_end, stderr=err,
                                             start_new_session=True, preexec_fn=preexec)
        except BaseException:
            self.stream.close()
            raise
        self.pid = self.proc.pid

    def start(self) -> None:
        self.stream.start()

    def join(self, image: str, marker: str, record: int, errors: list[str], emit: Callable[[str, str], None],
             tar_says: Callable[[str], None], tick: Callable[[], None], prog: str) -> int:
        """When the first tar has written ``image`` successfully: write the second archive over
        its end-of-archive blocks (after the ``marker`` member; ``record``: tar's record size in
        bytes), wait for the second tar, pass its messages to ``tar_says``, and call ``tick``
        about once a second meanwhile. A failure is appended to ``errors`` and emitted; with
        none (also none from ``tar_says``), the image is cut at its new end and synced.
        Returns the second tar's exit status (2 if a signal ended it). Raises ImageInterrupted
        (check_stop)."""
        rc = 0
        second, proc2 = self.stream, self.proc
        fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                second.place(fd, members_end(fd, os.fsencode(marker), record))
            except OSError as exc:
                # Not joined: the second tar is stopped by stop(), the image removed.
                errors.append(f"{prog}: {image}: {exc.strerror or exc}")
                emit(errors[-1], "stderr")
            else:
                # The copy ends when the second tar closes its output, i.e. as it exits.
                # (Popen.wait with a timeout polls in sleeps of up to 50 ms; join does not.)
                ticked = time.monotonic()
                while second.thread.is_alive():
                    second.thread.join(0.25)
                    check_stop()
                    if second.thread.is_alive() and time.monotonic() - ticked >= 1.0:
                        ticked = time.monotonic()
                        tick()
                if second.error is not None and proc2.poll() is None:
                    # The copy failed (no room, say): nothing reads the second tar's output
                    # any more, so it would wait on its pipe for ever.
                    stop_group(proc2.pid, 3.0, alive=lambda: proc2.poll() is None)
                proc2.wait()
                check_stop()
                rc = proc2.returncode if proc2.returncode >= 0 else 2
                with open(self.err_path, "rb") as err2:
                    for text in err2.read().decode("utf-8", "replace").splitlines():
                        tar_says(text)
                if second.error is not None or second.end < 0:
                    why = second.error.strerror or second.error if second.error else "the second stream was not written"
                    errors.append(f"{prog}: {image}: {why}")
                    emit(errors[-1], "stderr")
                elif not errors:
                    os.ftruncate(fd, second.end)
                    os.fsync(fd)
        finally:
            os.close(fd)
        return rc

    def stop(self) -> None:
        """Stop the tar if it still runs (TERM, then KILL, its group) and free the pipe."""
        proc2 = self.proc
        if proc2.poll() is None:
            stop_group(proc2.pid, 3.0, alive=lambda: proc2.poll() is None)
        self.stream.close()
