"""The image's checksums: an XXH3-64 of every MiB of the image, as it was written, kept in the
image's last member (``./tmp/vgdata/VG/backup.sums``); verify reads the whole image again and
compares, and names the members (header or data) in any block that changed.

They are computed while tar writes (``BlockSums``: a thread reads back what tar has written,
from the page cache, a safe distance behind its end), so the image is not read a second time
after tar ends: only its last blocks are. Blocks of the image, not members, because that needs
no parsing of tar headers (pure-Python header parsing costs more than tar's whole run on small
files), and covers headers as well as data.

XXH3 rather than zlib's CRC-32: measured twice as fast here (2.3 against 1.1 GB/s), and the
cost is per byte of the image. Both find any changed byte of a block; neither is a defence
against someone who rewrites the image and its checksums alike.

Format: ``aixsmit-sums 2 xxh3-64 BLOCK END`` then one ``%016x`` line per block of ``[0, END)``;
END is where the checksum member's own header starts.
"""

from __future__ import annotations

import os
import threading
import xxhash

digest = xxhash.xxh3_64_intdigest

BLOCK = 1 << 20
VERSION = "aixsmit-sums 2 xxh3-64"


def block_crcs(fd: int, start: int, end: int, block: int = BLOCK) -> list[int]:
    """The digest of each ``block`` of ``fd`` from ``start`` (a multiple of ``block``) to ``end``."""
    out = []
    pos = start
    while pos < end:
        n = min(block, end - pos)
        data = os.pread(fd, n, pos)
        if len(data) < n:
            raise OSError(5, f"the image ends at byte {pos + len(data)}, before byte {end}")
        out.append(digest(data))
        pos += n
    return out


def archive_end(fd: int, trailing_zeros: int = 0) -> int:
    """Where the archive in ``fd`` ends (where its end-of-archive blocks start), given that its
    last member's data ends with ``trailing_zeros`` zero bytes (the table of contents ends with
    one NUL, which can fall alone into a block of its own): after its last byte that is not
    zero, those zeros, then the padding to a whole block."""
    size = os.fstat(fd).st_size
    pos = size
    while pos > 0:
        span = min(pos, 1 << 16)
        chunk = os.pread(fd, span, pos - span)
        stripped = chunk.rstrip(b"\0")
        if stripped:
            end = pos - span + len(stripped) + trailing_zeros
            return end + (-end % 512)
        pos -= span
    return 0


def trailing_zeros(path: str) -> int:
    """How many zero bytes the file ``path`` ends with (looked at in its last 64 KB)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (1 << 16)))
        tail = f.read()
    return len(tail) - len(tail.rstrip(b"\0"))


_FOLLOWER = r"""
import os, select, sys
import xxhash
fd, margin, block = map(int, sys.argv[1:4])
digest = xxhash.xxh3_64_intdigest
done = 0
out = []
end = None
while True:
    if end is None:
        if select.select([0], [], [], 0.05)[0]:
            line = os.read(0, 64)
            end = int(line) if line.strip() else -1
            if end < 0:
                sys.exit(0)
            continue
        limit = os.fstat(fd).st_size - margin
        limit -= limit % block
    else:
        limit = end
    if limit <= done:
        if end is not None:
            break
        continue
    while done < limit:
        n = min(block, limit - done)
        data = os.pread(fd, n, done)
        if len(data) < n:
            sys.stderr.write("the image ends at byte %d, before byte %d" % (done + len(data), limit))
            sys.exit(1)
        out.append(digest(data))
        done += n
sys.stdout.write("".join("%016x\n" % c for c in out))
"""


class BlockSums:
    """Digests of the blocks of an image being written to ``fd``, computed by a helper process
    (the hashing then never waits for this process's interpreter lock, which the walk holds)
    that follows the writer ``margin`` bytes behind the file's end: the last record, whose
    end-of-archive blocks a joined second stream overwrites, is never read early."""

    def __init__(self, fd: int, margin: int, block: int = BLOCK):
        import subprocess
        import sys

        self.fd, self.margin, self.block = fd, margin, block
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _FOLLOWER, str(fd), str(margin), str(block)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(fd,), env=_helper_env())

    def start(self) -> None:
        pass  # (it started with the object)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"-1\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def finish(self, end: int) -> bytes:
        """The checksum member's data for the image ``[0, end)``, once the writing is over."""
        self.proc.stdin.write(b"%d\n" % end)
        self.proc.stdin.flush()
        out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise OSError(5, err.decode(errors="replace").strip() or f"checksum helper exit {self.proc.returncode}")
        crcs = [int(line, 16) for line in out.split()]
        return encode(crcs, end, self.block)


def _helper_env() -> dict:
    """The helper finds xxhash where this interpreter does (-S leaves site-packages out)."""
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def encode(crcs: list[int], end: int, block: int = BLOCK) -> bytes:
    return (f"{VERSION} {block} {end}\n" + "".join(f"{c:016x}\n" for c in crcs)).encode()


def decode(data: bytes) -> tuple[int, int, list[int]] | None:
    """(block, end, crcs), or None for a checksum member of another format. ValueError when
    it is of this format but broken."""
    head, _, body = data.partition(b"\n")
    words = head.decode(errors="replace").split()
    if " ".join(words[:3]) != VERSION or len(words) != 5:
        return None
    block, end = int(words[3]), int(words[4])
    if block <= 0 or end < 0:
        raise ValueError("bad block size or end")
    crcs = [int(line, 16) for line in body.split(b"\n") if line]
    if len(crcs) != (end + block - 1) // block:
        raise ValueError(f"{len(crcs)} checksums for {end} bytes")
    return block, end, crcs
