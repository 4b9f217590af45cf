"""Reading images: information files, listings (lsmksysb, lsbackvg, restore -T),
verification against the table of contents, and extraction (restore -x, restvg).

Every read of an image's bytes goes through open_image_stream(): an image is a tar archive,
packed (the whole archive compressed by zstd, as mksysb makes it into a file unless -p) or
not, and the readers see the same tar bytes either way.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import AixsmitError
from ..fs.mounts import visible
from . import image_data, tarread
from .walk import TOC_VERSIONS

Emit = Callable[[str, str], None]

TAR_EXTRACT_OPTS = ["--numeric-owner", "--same-owner", "--preserve-permissions", "--xattrs",
                    "--xattrs-include=*", "--delay-directory-restore"]
# ACLs and SELinux labels travel as the raw extended attributes the image holds; tar's own
# --acls on extract would skip those attributes and look for its SCHILY.acl records instead.


def _norm(name: str) -> str:
    if name.startswith("./") and not name.endswith("/") and len(name) > 2:
        return name  # (most names, as aixsmit's tar writes them)
    name = name.rstrip("/")
    if name in ("", "."):
        return "."
    if not name.startswith("./"):
        name = "./" + name.lstrip("/")
    return name


def open_image_stream(path: str, program: str = "listvgbackup"):
    """The image's bytes as tar wrote them, from a file, a disk (read in place) or a tape (read
    as a stream): the one place every reader of an image (list, verify, restore, restvg,
    clone) opens it. Returns ``(stream, seekable)``. AixsmitError (0512-054) when there is
    nothing to read."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raise FileNotFoundError
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise AixsmitError(f"{program}: {path} is neither a file nor a disk or tape: not a backup image")
        seekable = stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)
        if stat.S_ISCHR(st.st_mode):
            raw = open(path, "rb", buffering=0)
            first = raw.read(1 << 16)
            if first[:4] == ZSTD_MAGIC:
                return Unpacked(path, raw, first), False
            return _Prefixed(first, raw), False
        if stat.S_ISREG(st.st_mode) and is_packed(path):
            return Unpacked(path), False  # unpacked by zstd as it is read: a stream
        return open(path, "rb", buffering=0), seekable  # (the reader reads a MiB at a time)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise AixsmitError(f"0512-054 {program}: File {path} does not exist or is empty.")
    except OSError as exc:
        raise AixsmitError(f"{program}: {path}: cannot read the image: {exc.strerror}")


def open_image(path: str, program: str = "listvgbackup", hashing: bool = False) -> "Image":
    """The image, its first header read (an image whose first block is not a tar header is
    refused here: not a backup image). Iterate it with ``read_members``, which reads it as GNU
    tar does and keeps no list of members. ``hashing``: keep the XXH3 of every MiB read (a file
    is then read whole, never seeked over; a packed image is never hashed)."""
    stream, seekable = open_image_stream(path, program)
    try:
        img = Image(stream, seekable, tarread.open_size(stream) if seekable else None, hashing and seekable)
        img.first()
    except OSError as exc:
        stream.close()
        raise AixsmitError(f"{program}: {path} cannot be read: {exc.strerror or exc}")
    except tarread.HeaderError as exc:
        stream.close()
        raise AixsmitError(f"{program}: {path} is not a backup image: {exc}")
    except BaseException:
        stream.close()
        raise
    return img


class Image(tarread.Reader):
    """An open image: the tar reader over its stream, closed with it (for a packed image,
    closing stops zstd). ``pending``: its first member, read when it was opened."""

    def __init__(self, stream, seekable: bool, size: int | None, hashing: bool):
        super().__init__(stream, seekable, size, hashing)
        self.seekable_src = seekable  # a file or disk (tar may read the same open file)
        self.pending = None

    def first(self) -> None:
        """Read the first member now: a header error there (no tar header at all) is the
        opener's, as it was tarfile's."""
        self.pending = super().next()

    def next(self):
        m, self.pending = self.pending, None
        self.next = super().next  # (from the second member on, the reader's own)
        return m

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first bytes of a zstd frame (RFC 8878 §3.1.1)
UNPACK = ["zstd", "--decompress", "--stdout", "--quiet"]


def is_packed(path: str) -> bool:
    """Whether the image at ``path`` is packed (zstd). False for what cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZSTD_MAGIC
    except OSError:
        return False


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (a tape cannot go back): those, then the rest."""

    def __init__(self, first: bytes, raw):
        self.first, self.raw = first, raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.first:
            n = min(len(b), len(self.first))
            b[:n], self.first = self.first[:n], self.first[n:]
            return n
        return self.raw.readinto(b)

    def close(self) -> None:
        self.raw.close()
        super().close()


class Unpacked(io.RawIOBase):
    """The tar bytes of a packed image, as ``zstd --decompress`` (a process of its own, so it
    runs on another CPU than the reader) writes them. At their end, zstd's exit status is
    checked: a damaged or cut-short image (zstd checks each frame's own checksum) raises
    OSError (EIO), never reads as a shorter archive."""

    def __init__(self, path: str, source=None, first: bytes = b""):
        """zstd reads the file ``path`` itself; or, from a tape, ``first`` then the rest of ``source``."""
        self.path = path
        argv = UNPACK + ["--", path] if source is None else UNPACK
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if source is not None else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pump = None
        if source is not None:
            # A tape: what was read to recognise the image goes to zstd first, then the rest.
            def pump() -> None:
                try:
                    self.proc.stdin.write(first)
                    while chunk := source.read(1 << 20):
                        self.proc.stdin.write(chunk)
                except OSError:
                    pass
                finally:
                    try:
                        self.proc.stdin.close()
                    except OSError:
                        pass

            self.pump = threading.Thread(target=pump, name="aixsmit-unpack-feed", daemon=True)
            self.pump.start()
        self.source = source
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.ended:
            return 0
        n = self.proc.stdout.readinto(b)
        if not n:
            self.ended = True
            rc = self.proc.wait()
            if rc != 0:
                said = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                why = said[-1].rsplit(" : ", 1)[-1] if said else f"exit status {rc}"
                raise OSError(errno.EIO, f"the packed image is damaged or cut short (zstd: {why})")
        return n

    def drain(self) -> None:
        """Read to the end: zstd checks the frames' checksums and its exit status is checked there."""
        buf = bytearray(1 << 20)
        while self.readinto(buf):
            pass

    def close(self) -> None:
        if self.closed:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if f is not None:
                f.close()
        if self.pump is not None:
            self.pump.join(5)
        if self.source is not None:
            self.source.close()
        super().close()


class Damage(list):
    """What ``read_members`` found wrong with an image, one line each, in the order met."""


def read_members(tf: "Image", damage: Damage) -> Iterator[tarread.Member]:
    """The members of ``tf`` as GNU tar's extraction meets them: a damaged header is skipped
    to the next valid header (GNU tar: "Skipping to next header"); a member whose data the image
    does not hold in full ends the reading (GNU tar: "Unexpected EOF in archive"); an image that
    stops at a member boundary without its end-of-archive blocks was cut short. Each of these
    adds one line to ``damage``; list, verify and restore report the same lines, for a file, a
    disk, a tape or a packed image alike. Memory stays bounded (no list of members is kept)."""
    prev = None
    while True:
        at = tf.offset
        try:
            m = tf.next()
        except tarread.HeaderError as exc:
            last = _norm(prev.name) if prev is not None else ""
            if exc.kind in ("empty", "truncated"):
                if prev is not None and tf.eof and tf.read_to < at:
                    got = max(0, tf.read_to - prev.offset_data)
                    damage.append(f"{last}: only {got} of its {min(prev.size, prev.end - prev.offset_data)} bytes "
                                  "are in the image, which ends there: this file is incomplete and everything after "
                                  "it is lost")
                elif last:
                    damage.append(f"the image stops after {last} (byte {at}) without its end-of-archive marker: "
                                  "it was cut short, and what followed is lost")
                return
            where = f"after {last}" if last else "at its start"
            if exc.kind != "invalid":
                damage.append(f"the image ends in the middle of a member {where} (byte {at}): everything after it "
                              f"is lost ({exc})")
                return
            # A damaged header: on to the next block that is a valid header, as GNU tar does.
            nxt = at + tarread.BLOCKSIZE
            try:
                while True:
                    block = tf.read_at(nxt, tarread.BLOCKSIZE)
                    if len(block) < tarread.BLOCKSIZE or block == tarread.ZEROS:
                        nxt = -1
                        break
                    if tarread.valid_header(block):
                        break
                    nxt += tarread.BLOCKSIZE
            except OSError as exc:
                damage.append(f"the image ends in the middle of a member {where} (byte {nxt}): everything after it "
                              f"is lost ({exc})")
                return
            if nxt < 0:
                damage.append(f"a damaged header {where} (byte {at}): no valid header follows; what it held is lost")
                return
            damage.append(f"a damaged header {where} (byte {at}): skipped to the next header (byte {nxt}); "
                          "the member it described is lost")
            tf.offset = nxt
            continue
        except OSError as exc:
            where = f"after {_norm(prev.name)}" if prev is not None else "at its start"
            damage.append(f"the image ends in the middle of a member {where} (byte {at}): everything after it is "
                          f"lost ({exc})")
            return
        if m is None:
            return  # the end-of-archive marker
        if tf.size is not None and m.end > tf.size:
            # (a file or disk: its size says at once that the data is not all there)
            got = max(0, tf.size - m.offset_data)
            damage.append(f"{_norm(m.name)}: only {got} of its {min(m.size, m.end - m.offset_data)} bytes are in "
                          "the image, which ends there: this file is incomplete and everything after it is lost")
            yield m
            return
        prev = m
        yield m


@dataclass
class ImageInfo:
    path: str
    kind: str  # mksysb | savevg
    vg: str
    member: str
    stanzas: image_data.Stanzas
    toc_member: str


def read_info(path: str, program: str = "listvgbackup") -> ImageInfo:
    """The information file, found among the first members of the image."""
    from ..safefile import INFO_FILE_LIMIT

    with open_image(path, program) as tf:
        for i, m in enumerate(read_members(tf, Damage())):
            name = _norm(m.name)
            if name == "./image.data" or (name.startswith("./tmp/vgdata/") and name.endswith(".data")
                                          and name.count("/") == 4):
                if not m.isfile() or m.size > INFO_FILE_LIMIT:
                    raise AixsmitError(f"{program}: {path}: its information file {name} is not a file of at most "
                                       f"{INFO_FILE_LIMIT >> 20} MB: it is not a mksysb or savevg image")
                try:
                    text = tf.data(m, INFO_FILE_LIMIT).decode("utf-8", "replace")
                except (OSError, ValueError) as exc:
                    raise AixsmitError(f"{program}: {path}: its information file {name} cannot be read: {exc}")
                try:
                    stanzas = image_data.parse(text)
                except AixsmitError as exc:
                    raise AixsmitError(f"{program}: {path}: {name}: {exc}") from None
                vg = image_data.first(stanzas, "vg_data").get("VGNAME", "rootvg")
                if not vg or "/" in vg or vg in (".", ".."):
                    raise AixsmitError(f"{program}: {path}: {name}: VGNAME {vg!r} is not a volume group name")
                kind = "mksysb" if name == "./image.data" else "savevg"
                return ImageInfo(path, kind, vg, name, stanzas, f"./tmp/vgdata/{vg}/backup.toc")
            if i > 8:
                break
    raise AixsmitError(f"{program}: {path} has no image.data or vgname.data: it is not a mksysb or savevg image")


def damaged(path: str, program: str, damage: Damage) -> AixsmitError:
    """The one error list, verify and restore give for a damaged image: its first problem on
    the line, the others as details."""
    return AixsmitError(f"{program}: {path} is damaged: {damage[0]}", details=[f"  {d}" for d in damage[1:]])


def members(path: str, program: str = "listvgbackup") -> Iterator[tarread.Member]:
    """Every member GNU tar would extract, in order; then AixsmitError if the image is damaged."""
    damage = Damage()
    with open_image(path, program) as tf:
        yield from read_members(tf, damage)
    if damage:
        raise damaged(path, program, damage)


def _image_size(path: str) -> int:
    """The image's length: the file's size, or on a device the end of the archive in it."""
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    with open_image(path) as tf:
        for _ in read_members(tf, Damage()):
            pass
        return tf.offset


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value or default)
    except ValueError:
        return default


def long_header(info: ImageInfo) -> list[str]:
    """``lsmksysb -l`` / ``listvgbackup -l`` (aix-smit.md §3.8), then the group's LV table."""
    img = image_data.first(info.stanzas, "image_data")
    fss = image_data.every(info.stanzas, "fs_data")
    size = _image_size(info.path)
    used = sum(_int(fs.get("FS_USED_BYTES", "0")) for fs in fss)
    lines = [
        f"VOLUME GROUP:           {info.vg}",
        f"BACKUP DATE/TIME:       {img.get('DATE_TIME', '')}",
        f"UNAME INFO:             {img.get('UNAME_INFO', '')}",
        f"BACKUP OSLEVEL:         {img.get('OSLEVEL', os.uname().release if img.get('PLATFORM') == 'linux' else '')}",
        f"MAINTENANCE LEVEL:      {img.get('MAINTENANCE_LEVEL', '')}",
        f"BACKUP SIZE (MB):       {max(1, round(size / (1024 * 1024)))}",
        f"SHRINK SIZE (MB):       {max(1, round(used / (1024 * 1024)))}",
        f"VG DATA ONLY:           {img.get('VG_DATA_ONLY', 'no')}",
        "",
        f"{info.vg}:",
        "LV NAME             TYPE       LPs     PPs     PVs  LV STATE      MOUNT POINT",
    ]
    for lv in image_data.every(info.stanzas, "lv_data"):
        lps = lv.get("LPs", "0")
        lines.append(f"{lv.get('LOGICAL_VOLUME', ''):<19} {lv.get('TYPE', ''):<10} {lps:<7} {lps:<7} {'1':<4} "
                     f"{'closed/syncd':<13} {visible(lv.get('MOUNT_POINT', ''))}")
    return lines


def list_names(path: str, program: str) -> Iterator[str]:
    for m in members(path, program):
        yield _norm(m.name)


# --- verification ------------------------------------------------------------------------

_KIND = {b"5": "d", b"2": "l", b"0": "f", b"\0": "f", b"7": "f", b"1": "f", b"3": "c", b"4": "b", b"6": "p",
         b"S": "f"}  # tar's type flags: the table of contents' kinds


@dataclass
class Verification:
    path: str
    members: int = 0
    bytes: int = 0
    status: str = "OK"  # OK, WARN, FAILED
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why
    seconds: float = 0.0


def sums_member(toc_member: str) -> str:
    return toc_member.rsplit("/", 1)[0] + "/backup.sums"


def append_member(fd: int, end: int, name: str, data: bytes, record: int = 20 * 512) -> int:
    """Write member ``name`` holding ``data`` at ``end`` (over the end-of-archive blocks), then
    new end-of-archive blocks, padded to a whole ``record``. Returns the new length."""
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(time.time())
    buf = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data
    buf += b"\0" * (-len(buf) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
    buf += b"\0" * (-(end + len(buf)) % record)
    view, pos = memoryview(buf), end
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n
    os.ftruncate(fd, pos)
    return pos


def _parse_toc(data: bytes) -> dict[str, str]:
    """The table of contents (walk.TOC_VERSION): kind letter by ./name."""
    head, _, body = data.partition(b"\n")
    if head.decode(errors="replace") not in TOC_VERSIONS:
        return {}
    out: dict[str, str] = {}
    here = b"."
    for rec in body.split(b"\0"):
        if not rec:
            continue
        name = rec[1:]
        if rec[0] == 0x2F:  # "/": the directory the names without a slash that follow are in
            here = name
            continue
        if b"/" not in name and name != b".":
            name = here + b"/" + name
        out[_norm(name.decode("utf-8", "surrogateescape"))] = chr(rec[0])
    return out


def changed_members(tf: "Image", recorded: tuple[int, int, list[int]], starts, ends, names: list[str]) -> list[str]:
    """The ./names of the members lying (header or data, ``starts[k]`` to ``ends[k]``, bytes) in
    a block of the image whose checksum is not the one ``recorded`` (block size, end, checksums:
    backup.sums). The blocks' checksums are the ones ``tf`` took as it read (opened with
    hashing), the last part-block read again; otherwise the image is read again from byte 0
    (pread). OSError when the image cannot be read."""
    from . import sums as blocksums

    block, end, crcs = recorded
    fd = tf.stream.fileno()
    whole = end // block
    if block == tarread.CHUNK and tf.digests is not None and len(tf.digests) >= whole:
        got = tf.digests[:whole]
        if end % block:
            got += blocksums.block_crcs(fd, whole * block, end, block)
    else:
        got = blocksums.block_crcs(fd, 0, end, block)
    hit: list[str] = []
    for i in (i for i, (a, b) in enumerate(zip(crcs, got)) if a != b):
        lo, hi = i * block, (i + 1) * block
        hit += [names[k] for k in range(len(names)) if starts[k] < hi and ends[k] > lo and names[k] not in hit]
    return hit


def verify(path: str, program: str = "verify") -> Verification:
    """Read the whole image, as a restore reads it, and check it against what was recorded when
    it was made: the table of contents (every entry's name and kind) and the checksums (a
    XXH3 checksum of every MiB of the image: headers and data). Damage, truncation, a changed byte, a
    member the table does not hold, a member that would land outside a restore's target:
    FAILED. Entries that vanished or changed type while the backup ran (tar warned about them
    then): WARN. An image without checksums (made before they existed, or on a tape) is checked
    against its table of contents only, and says so (notes)."""
    from array import array

    from ..safefile import TOC_LIMIT
    from . import sums as blocksums

    start = time.monotonic()
    result = Verification(path)
    try:
        info = read_info(path, program)
    except AixsmitError as exc:
        if not is_packed(path):
            raise
        # A packed image whose start cannot be unpacked: damaged, not some other file.
        result.status = "FAILED"
        result.problems.append(str(exc))
        result.seconds = time.monotonic() - start
        return result
    sums_name = sums_member(info.toc_member)
    toc: dict[str, str] | None = None
    recorded: tuple[int, int, list[int]] | None = None
    sums_at = -1
    seen: dict[str, str] = {}
    starts, ends, names = array("q"), array("q"), []  # where each member lies, for a changed block
    damage = Damage()
    symlinks: set[str] = set()
    safe_dirs: set[str] = set()
    unsafe: list[str] = []
    relinked: list[str] = []
    own = (info.toc_member, sums_name)
    count = 0
    with open_image(path, program, hashing=True) as tf:
        starts_add, ends_add, names_add = starts.append, ends.append, names.append  # (per member: kept short)
        for m in read_members(tf, damage):
            name = _norm(m.name)
            count += 1
            starts_add(m.offset)
            ends_add(m.end)
            names_add(name)
            if name in symlinks and m.type != tarread.SYMTYPE:
                relinked.append(name)
            why = unsafe_member(m, symlinks, name, safe_dirs)
            if why:
                unsafe.append(why)
            if name in own:
                if not m.isfile() or m.size > TOC_LIMIT:
                    damage.append(f"{name}: not a file of at most {TOC_LIMIT >> 20} MB")
                    break
                try:
                    data = tf.data(m, TOC_LIMIT)
                except (OSError, ValueError) as exc:
                    damage.append(f"{name}: {exc}")
                    break
                if name == info.toc_member:
                    toc = _parse_toc(data)
                else:
                    sums_at = m.offset
                    try:
                        recorded = blocksums.decode(data)
                    except ValueError as exc:
                        damage.append(f"{name}: the checksums cannot be read ({exc})")
                continue
            kind = _KIND.get(m.type, "f")
            if m.type in tarread.REGULAR:
                result.bytes += m.size
            seen[name] = kind
        result.members = count
        seekable = tf.seekable_src
        if isinstance(tf.stream, Unpacked) and not damage:
            try:
                tf.drain()  # zstd checks every frame's checksum: any changed byte fails here
            except OSError as exc:
                damage.append(exc.strerror or str(exc))
        if recorded is not None and not damage:
            end = recorded[1]
            if end != sums_at or not seekable:
                result.problems.append(f"{sums_name}: the checksums cover {end} bytes, but the image's members end at "
                                       f"byte {sums_at}")
            else:
                try:
                    hit = changed_members(tf, recorded, starts, ends, names)
                except OSError as exc:
                    damage.append(f"reading the image again: {exc.strerror or exc}")
                    hit = []
                for name in hit[:20]:
                    result.problems.append(f"{name}: its data is not what was written (a changed byte: the checksum of "
                                           "its part of the image differs)")
                if len(hit) > 20:
                    result.problems.append(f"… and {len(hit) - 20} more members in changed parts of the image")
    if damage:
        result.status = "FAILED"
        result.problems += list(damage)
        result.seconds = time.monotonic() - start
        return result
    if unsafe:
        result.problems.append(f"{len(unsafe)} member(s) would be restored outside the target (first: {unsafe[0]}); "
                               "restore refuses this image")
    if relinked:
        result.problems.append(RELINKED.format(n=len(relinked), first=relinked[0]) + "; restore refuses this image")
    if toc is None:
        result.status = "FAILED"
        result.problems.append("the table of contents (backup.toc) is missing: the image was not made by aixsmit or is incomplete")
    else:
        # aixsmit's own members: the information files, and the vgdata directory itself (where
        # two tar streams meet).
        staged = {info.member, f"./tmp/vgdata/{info.vg}/fstab", f"./tmp/vgdata/{info.vg}"}
        for name, kind in toc.items():
            got = seen.get(name)
            if got is None:
                result.warnings.append(f"{name}: recorded but not in the image (removed while the backup ran?)")
            elif got != kind and not (kind == "f" and got in "fl"):
                result.warnings.append(f"{name}: recorded as {kind}, archived as {got} (replaced while the backup ran?)")
        extra = [n for n in seen if n not in toc and n not in staged]
        for n in extra[:20]:
            result.problems.append(f"{n}: in the image but not in its table of contents")
    if recorded is None and not is_packed(path):  # (a packed image: zstd's own checksums were checked)
        result.notes.append("the image has no checksums (made by an older aixsmit, or on a tape): its members were "
                            "read, its bytes not compared")
    if result.problems:
        result.status = "FAILED"
    elif result.warnings:
        result.status = "WARN"
    result.seconds = time.monotonic() - start
    return result


# --- restore ----------------------------------------------------------------------------

@dataclass
class Survey:
    """What a restore needs to know before it writes anything, from one pass over the image."""

    unsafe: list[str] = field(default_factory=list)  # members that would land outside the target
    relinked: list[str] = field(default_factory=list)  # members named as a symbolic link before them
    outside: list[str] = field(default_factory=list)  # members outside ``within`` (restvg: the group)
    names: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    links: dict[str, str] = field(default_factory=dict)  # hard link member -> the member it links to
    incremental: bool = False  # a level backup: its GNU dumpdir records say what was deleted
    damage: Damage = field(default_factory=Damage)
    sums: tuple[int, int, list[int]] | None = None  # the checksums the image records (backup.sums)
    sums_at: int = -1  # where the checksum member's header lies
    order: list[str] = field(default_factory=list)  # the ./names in image order, and where each lies:
    starts: object = None
    ends: object = None


def _under(name: str, tops: list[str]) -> bool:
    return any(top == "." or name == top or name.startswith(top + "/") for top in tops)


# A member whose name the image gave a symbolic link before it: GNU tar makes such a link last
# (a link that leads out of the target is held back to the end of the extraction), so the
# link would stay and the member's data be lost while the restore said it was restored.
RELINKED = ("{n} member(s) come after a symbolic link of the same name, which tar would keep instead "
            "(first: {first})")


def unsafe_member(m: tarread.Member, symlinks: set[str], norm: str = "", safe_dirs: set[str] | None = None) -> str:
    """Why extracting ``m`` would write outside the target ("" if it would not): an absolute
    name, ``..``, a hard link to such a name, or a name below a symbolic link the image itself
    holds (``symlinks``: the ./names of those met so far; a write through the link would land
    wherever it leads). Keeps ``symlinks`` up to date. ``norm``: ``m``'s ./name, when the caller
    has it; ``safe_dirs``: a set the caller keeps across members, of folders found below no link
    (emptied when a link is met)."""
    name = m.name
    why = ""
    if name.startswith("/") or (".." in name and ".." in name.split("/")):
        why = name
    elif m.type == tarread.LNKTYPE and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
        why = f"{name} (hard link to {m.linkname})"
    elif symlinks:
        prefix = norm or _norm(name)
        parent = prefix.rpartition("/")[0]
        if safe_dirs is None or parent not in safe_dirs:
            while prefix.count("/") > 1:
                prefix = prefix.rsplit("/", 1)[0]
                if prefix in symlinks:
                    why = f"{name} (below the symbolic link {prefix} the image holds)"
                    break
            if not why and safe_dirs is not None:
                safe_dirs.add(parent)
    if m.type == tarread.SYMTYPE:
        symlinks.add(norm or _norm(name))
        if safe_dirs:
            safe_dirs.clear()
    return why


def survey(path: str, program: str, within: list[str] | None = None, skip: list[str] | None = None,
           tf: "Image | None" = None, sums_name: str = "") -> Survey:
    """One pass over the image's headers (read_members; ``tf``: the image already open, else it
    is opened by ``path``). ``unsafe``: absolute names, ``..``, hard links to such names, and
    members below a symbolic link the image itself holds (a write through the link would land
    wherever it leads). With ``within`` (./mount points), members below none of them, nor in
    ``skip`` nor a folder above one of them, are ``outside``; hard links must stay within too.
    With ``sums_name`` (the image's checksum member), the recorded checksums and where each
    member lies are kept for ``changed_members``."""
    from array import array

    from ..safefile import TOC_LIMIT
    from . import sums as blocksums

    out = Survey()
    symlinks: set[str] = set()
    safe_dirs: set[str] = set()
    above = set()
    for top in within or []:
        while top not in (".", ""):
            top = top.rsplit("/", 1)[0]
            above.add(top or ".")
    out.starts, out.ends = array("q"), array("q")
    # (an image opened by the caller stays open: a restore hands the same file to tar)
    with (contextlib.nullcontext(tf) if tf is not None else open_image(path, program)) as tf:
        starts, ends, order = out.starts.append, out.ends.append, out.order.append  # (per member: kept short)
        names, dirs, links = out.names.add, out.dirs.add, out.links
        for m in read_members(tf, out.damage):
            norm = _norm(m.name)
            typ = m.type
            starts(m.offset)
            ends(m.end)
            order(norm)
            if norm in symlinks and typ != tarread.SYMTYPE:
                out.relinked.append(norm)
            why = unsafe_member(m, symlinks, norm, safe_dirs)
            if why:
                out.unsafe.append(why)
            if norm == sums_name and m.isfile() and m.size <= TOC_LIMIT and out.sums is None:
                try:
                    out.sums = blocksums.decode(tf.data(m, TOC_LIMIT))
                    out.sums_at = m.offset
                except (OSError, ValueError):
                    pass  # verify says why; a restore checks no checksums then
            if within is not None and not _under(norm, skip or []):
                if not _under(norm, within) and not (typ == tarread.DIRTYPE and norm in above):
                    out.outside.append(norm)
                elif typ == tarread.LNKTYPE and not _under(_norm(m.linkname), within):
                    out.outside.append(f"{norm} (hard link to {_norm(m.linkname)})")
            if not out.incremental and (typ == b"D" or m.pax_has("GNU.dumpdir")):
                out.incremental = True
            names(norm)
            if typ == tarread.DIRTYPE:
                dirs(norm)
            elif typ == tarread.LNKTYPE:
                links[norm] = _norm(m.linkname)
    return out


def check_target(target: str, found: Survey, chosen: Callable[[str], bool] | None, program: str, path: str,
                 replace_files: bool = False) -> None:
    """Refuse, before anything is written, what GNU tar would do wrong in ``target``: tar
    follows the symbolic links already there, so every folder a member (``chosen`` among
    ``found.names``, all of them if None, and the name a hard link points to) is written into must, resolved as the
    kernel resolves it, stay inside ``target`` (a link planted by another user, ``etc ->
    /victim``, is refused and named); and tar replaces a file, link or device by the image's
    directory of the same name, deleting it: refused too, unless ``replace_files`` (a
    whole-file-system restore of a level backup, which says first what goes). AixsmitError,
    one line."""
    real_target = os.path.realpath(target)
    folders: set[str] = set()
    links = found.links
    for name in found.names:
        if chosen is not None and not chosen(name):
            continue
        for n in (name, links[name]) if name in links else (name,):
            i = n.rfind("/")
            while i > 1:  # (./names: the folders above n, up to the first one already met)
                n = n[:i]
                if n in folders:
                    break
                folders.add(n)
                i = n.rfind("/")
    checked: dict[str, bool] = {}
    for folder in sorted(folders | {n for n in found.dirs if (chosen is None or chosen(n)) and n != "."},
                         key=lambda n: n.count("/")):
        parent = folder.rsplit("/", 1)[0]
        if checked.get(parent) is False:
            checked[folder] = False  # below a folder not there yet: tar makes it
            continue
        where = os.path.join(target, folder[2:])
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            checked[folder] = False
            continue
        except OSError as exc:
            raise AixsmitError(f"{program}: {where}: {exc.strerror}; nothing was restored.")
        checked[folder] = True
        if stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(where)
            if os.path.commonpath([real, real_target]) != real_target:
                raise AixsmitError(f"{program}: {where} is a symbolic link to {os.readlink(where)}, which leaves "
                                   f"{target}: a restore does not write through it; nothing was restored.")
            if os.path.isdir(real) and (folder not in found.dirs or replace_files):
                continue  # a link inside the target: tar writes through it, as into the folder
        if replace_files and folder in found.dirs:
            continue
        kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "non-directory"
        raise AixsmitError(f"{program}: {where} is a {kind} where {path} holds a directory: a restore does not "
                           "replace it; move it away first. Nothing was restored.")


def restore_argv(path: str, target: str, files: list[str], verbose: bool, apply_deletions: bool,
                 packed: bool = False) -> list[str]:
    """GNU tar's extraction of the image ``path`` ("-": its standard input) into ``target``;
    ``packed``: the image is zstd's."""
    argv = ["tar", "--extract", "--force-local", f"--file={path}", "-C", target, *TAR_EXTRACT_OPTS]
    if packed:
        argv.append("--zstd")
    if apply_deletions:
        # Only a whole-file-system restore of a chain (restore -r) removes what a level backup
        # says was deleted since the level it builds on; restore -x never deletes, as on AIX.
        argv.append("--listed-incremental=/dev/null")
    if verbose:
        argv += ["--verbose", "--quoting-style=escape"]
    if files:
        argv += ["--"] + [_norm(f) for f in files]
    return argv


def restore(path: str, target: str, files: list[str], verbose: bool, emit: Emit, program: str = "restore",
            within: list[str] | None = None, skip: list[str] | None = None, apply_deletions: bool = False) -> int:
    """Extract into ``target``. Refused before anything is written: what the listing refuses
    (no information file: not a backup image), members that would land outside ``target``
    (names, hard links, links the image holds, links already in ``target``: check_target), a
    directory of the image where ``target`` has a file. With ``within`` (restvg: the group's
    ./mount points) only members below those are extracted, and an image holding anything else
    (but ``skip``: aixsmit's own information files) is refused. Nothing in ``target`` is removed
    unless ``apply_deletions`` (a whole-file-system restore of a level backup,
    ``backup.chains.restore_whole``, which checks the target and says first what goes; never
    with ``within``). ``target``'s own mode and owner are left as they were. The image is opened
    once (a file or disk: tar reads the same open file). A damaged image restores what GNU tar
    can read and then fails with the same one line list and verify give; members in a part of
    the image whose checksum differs are named after the extraction, and the restore fails."""
    try:
        tfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise AixsmitError(f"{program}: {target} is not a directory")
    except OSError as exc:
        raise AixsmitError(f"{program}: {target}: {exc.strerror}")
    try:
        return _restore(path, target, tfd, files, verbose, emit, program, within, skip, apply_deletions)
    finally:
        os.close(tfd)


def _restore(path: str, target: str, tfd: int, files: list[str], verbose: bool, emit: Emit, program: str,
             within: list[str] | None, skip: list[str] | None, apply_deletions: bool) -> int:
    try:
        sums_name = sums_member(read_info(path, program).toc_member)
    except AixsmitError:
        sums_name = ""  # a backup by name or by level: a plain tar, restored as restore -T lists it
    # An image with checksums is hashed as the survey reads it (a file: read once, whole).
    with open_image(path, program, hashing=bool(sums_name)) as tf:
        stream, seekable = tf.stream, tf.seekable_src
        found = survey(path, program, within, skip, tf=tf, sums_name=sums_name)
        if found.unsafe:
            raise AixsmitError(f"{program}: {path}: {len(found.unsafe)} member(s) would be restored outside {target} "
                               f"(first: {found.unsafe[0]}); nothing was restored.")
        if found.relinked:
            raise AixsmitError(f"{program}: {path}: " + RELINKED.format(n=len(found.relinked), first=found.relinked[0])
                               + "; nothing was restored.")
        if found.outside:
            raise AixsmitError(f"{program}: {path}: {len(found.outside)} member(s) lie outside the volume group's file "
                               f"systems ({' '.join(within or [])}) (first: {found.outside[0]}); nothing was restored.")
        names = found.names
        missing = [f for f in files if _norm(f) not in names and not any(n.startswith(_norm(f) + "/") for n in names)]
        if missing:
            raise AixsmitError(f"{program}: {missing[0]} is not in the image {path}; nothing was restored.")
        if files:
            # A file the image holds as a hard link has its data under the name it links to: that
            # name is restored too (tar cannot make the link otherwise).
            files = [_norm(f) for f in files]
            chosen = lambda n: any(n == w or n.startswith(w + "/") for w in files)  # noqa: E731
            for link, data in sorted(found.links.items()):
                while chosen(link) and not chosen(data):
                    emit(f"{program}: also restoring {data}: {link} is a hard link to it", "stdout")
                    files.append(data)
                    link, data = data, found.links.get(data, data)
        elif within is not None:
            files = [top for top in within if top in names]
            if not files:
                emit(f"{program}: {path} holds no file of {' '.join(within)}: nothing to restore.", "stdout")
                return 0
        wanted = list(files)
        check_target(target, found, (lambda n: any(n == w or n.startswith(w + "/") for w in wanted)) if wanted else None,
                     program, path, replace_files=apply_deletions)
        deletions = apply_deletions and found.incremental and not files and within is None
        own = os.fstat(tfd)
        if seekable:
            # tar reads the descriptor, not this buffered reader: a seek that lands inside the
            # reader's buffer would not move the descriptor, and tar would start where the
            # survey's last read ended (an image smaller than the buffer restored nothing).
            stream.seek(0)
            os.lseek(stream.fileno(), 0, os.SEEK_SET)
        try:
            # A packed image (a stream: zstd unpacks it) or a tape is read again by name.
            proc = subprocess.run(restore_argv("-" if seekable else path, target, files, verbose, deletions,
                                               not seekable and is_packed(path)),
                                  stdin=stream if seekable else subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="surrogateescape")
        finally:
            # The target itself is the operator's: the image's "." (tar sets it at the end, with
            # --delay-directory-restore) does not change its owner or mode.
            try:
                os.fchown(tfd, own.st_uid, own.st_gid)
                os.fchmod(tfd, stat.S_IMODE(own.st_mode))
            except OSError:
                pass
        for line in proc.stdout.splitlines():
            emit(f"x {line}", "stdout")
        if found.damage:
            # tar's own lines say the same damage, in its words: the one line list and verify give.
            raise damaged(path, program, found.damage)
        for line in proc.stderr.splitlines():
            emit(line, "stderr")
        if proc.returncode != 0:
            raise AixsmitError(f"{program}: restoring from {path} failed (tar exit status {proc.returncode}); see the "
                               "messages above.")
        if found.sums is not None and seekable and found.sums[1] == found.sums_at:
            try:
                hit = changed_members(tf, found.sums, found.starts, found.ends, found.order)
            except OSError as exc:
                raise AixsmitError(f"{program}: {path}: reading the image again to check its checksums: "
                                   f"{exc.strerror or exc}")
            hit = [n for n in hit if not wanted or any(n == w or n.startswith(w + "/") for w in wanted)]
            if hit:
                raise AixsmitError(f"{program}: {path}: {len(hit)} restored member(s) lie in a part of the image whose "
                                   f"checksum differs (a changed byte): {' '.join(hit[:5])}"
                                   f"{' …' if len(hit) > 5 else ''}; verify -f {path} names them all.")
    return 0
