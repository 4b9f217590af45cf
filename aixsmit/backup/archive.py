"""Reading images: information files, listings (lsmksysb, lsbackvg, restore -T),
verification against the table of contents, and extraction (restore -x, restvg).

Every read of an image's bytes goes through open_image_stream(): an image is a tar archive,
packed (the whole archive compressed by zstd, as mksysb makes it unless -p) or not, and the
readers see the same tar bytes either way.
"""

from __future__ import annotations

import collections
import errno
import io
import os
import stat
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import AixsmitError
from . import image_data
from .engine import TOC_VERSION

Emit = Callable[[str, str], None]

TAR_EXTRACT_OPTS = ["--numeric-owner", "--same-owner", "--preserve-permissions", "--xattrs",
                    "--xattrs-include=*", "--delay-directory-restore"]
# ACLs and SELinux labels travel as the raw extended attributes the image holds; tar's own
# --acls on extract would skip those attributes and look for its SCHILY.acl records instead.


def _norm(name: str) -> str:
    name = name.rstrip("/")
    if name in ("", "."):
        return "."
    if not name.startswith("./"):
        name = "./" + name.lstrip("/")
    return name


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first bytes of a zstd frame (RFC 8878 §3.1.1)
UNPACK = ["zstd", "--decompress", "--stdout", "--quiet"]


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
    checked: a damaged or cut-short image raises OSError (EIO) naming the image, never reads
    as a shorter archive. ``pos`` counts the bytes read; the last ones read are kept so a
    reader that went past the end-of-archive blocks can look at them again (``at``)."""

    KEEP = 1 << 17

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
        self.pos = 0
        self.kept: collections.deque[tuple[int, bytes]] = collections.deque()
        self.kept_bytes = 0
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
            return 0
        self.kept.append((self.pos, bytes(b[:n])))
        self.kept_bytes += n
        while self.kept_bytes - len(self.kept[0][1]) >= self.KEEP:
            self.kept_bytes -= len(self.kept.popleft()[1])
        self.pos += n
        return n

    def at(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (reading on as far as needed), if still kept."""
        while self.pos < offset + size and not self.ended:
            if not self.readinto(bytearray(1 << 16)):
                break
        data = b"".join(chunk for _, chunk in self.kept)
        start = offset - (self.kept[0][0] if self.kept else self.pos)
        if start < 0:
            raise OSError(errno.EIO, "the end of the archive is no longer in memory")
        return data[start:start + size]

    def drain(self) -> None:
        """Read to the end: zstd's exit status is checked there."""
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


def is_packed(path: str) -> bool:
    """Whether the image at ``path`` is packed (zstd). False for what cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZSTD_MAGIC
    except OSError:
        return False


def open_image_stream(path: str, program: str = "listvgbackup") -> tuple[io.RawIOBase | io.BufferedReader, bool]:
    """The image's tar bytes, and whether they can be read in place (seek) or only as a
    stream: a packed image is unpacked by zstd as it is read (Unpacked); an unpacked one in a
    file or on a disk is read in place, on a tape as a stream. Raises AixsmitError
    (0512-054 for a missing or empty file)."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raise FileNotFoundError(path)
        if stat.S_ISCHR(st.st_mode):
            raw = open(path, "rb", buffering=0)
            first = raw.read(1 << 16)
            if first[:4] == ZSTD_MAGIC:
                return Unpacked(path, raw, first), False
            return _Prefixed(first, raw), False
        if is_packed(path):
            return Unpacked(path), False
        return open(path, "rb"), True
    except (FileNotFoundError, IsADirectoryError):
        raise AixsmitError(f"0512-054 {program}: File {path} does not exist or is empty.")
    except OSError as exc:
        raise AixsmitError(f"{program}: {path} cannot be read: {exc.strerror or exc}")


class ImageDamaged(AixsmitError):
    """An image that cannot be read to its end: cut short or damaged."""


def open_image(path: str, program: str = "listvgbackup") -> tarfile.TarFile:
    """An image as a tar archive: packed or not, in a file, on a disk (read in place where it
    can be) or on a tape (read as a stream). Closing it closes the stream (and stops zstd)."""
    stream, seekable = open_image_stream(path, program)
    try:
        tf = _ImageTar.open(fileobj=stream, mode="r:" if seekable else "r|")
    except OSError as exc:
        stream.close()
        raise ImageDamaged(f"{program}: {path} cannot be read: {exc.strerror or exc}")
    except tarfile.TarError as exc:
        stream.close()
        raise AixsmitError(f"{program}: {path} is not a backup image: {exc}")
    tf.stream = stream
    return tf


class _ImageTar(tarfile.TarFile):
    """A TarFile that closes the image stream it reads (tarfile leaves a given fileobj open)."""

    stream = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.stream is not None:
                self.stream.close()


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
    with open_image(path, program) as tf:
        for i, m in enumerate(_headers(tf, path, program)):
            name = _norm(m.name)
            if name == "./image.data" or (name.startswith("./tmp/vgdata/") and name.endswith(".data")
                                          and name.count("/") == 4):
                f = tf.extractfile(m)
                text = f.read().decode("utf-8", "replace") if f else ""
                stanzas = image_data.parse(text)
                vg = image_data.first(stanzas, "vg_data").get("VGNAME", "rootvg")
                kind = "mksysb" if name == "./image.data" else "savevg"
                return ImageInfo(path, kind, vg, name, stanzas, f"./tmp/vgdata/{vg}/backup.toc")
            if i > 8:
                break
    raise AixsmitError(f"{program}: {path} has no image.data or vgname.data: it is not a mksysb or savevg image")


def _headers(tf: tarfile.TarFile, path: str, program: str) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tf
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageDamaged(f"{program}: {path}: the image is damaged or incomplete: "
                           f"{getattr(exc, 'strerror', None) or exc}")


def members(path: str, program: str = "listvgbackup") -> Iterator[tarfile.TarInfo]:
    """Every member's header, in order. A damaged or cut-short image raises AixsmitError where
    the damage is met."""
    with open_image(path, program) as tf:
        yield from _headers(tf, path, program)


def _image_size(path: str) -> int:
    """The image's length: the file's size, or on a device the end of the archive in it."""
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    with open_image(path) as tf:
        for _ in tf:
            pass
        return tf.offset


def long_header(info: ImageInfo) -> list[str]:
    """``lsmksysb -l`` / ``listvgbackup -l`` (aix-smit.md §3.8), then the group's LV table."""
    img = image_data.first(info.stanzas, "image_data")
    fss = image_data.every(info.stanzas, "fs_data")
    size = _image_size(info.path)
    used = sum(int(fs.get("FS_USED_BYTES", "0") or 0) for fs in fss)
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
                     f"{'closed/syncd':<13} {lv.get('MOUNT_POINT', '')}")
    return lines


def list_names(path: str, program: str) -> Iterator[str]:
    for m in members(path, program):
        yield _norm(m.name)


# --- verification ------------------------------------------------------------------------

_KIND = {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f",
         tarfile.CONTTYPE: "f", tarfile.LNKTYPE: "f", tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b",
         tarfile.FIFOTYPE: "p", tarfile.GNUTYPE_SPARSE: "f"}


@dataclass
class Verification:
    path: str
    members: int = 0
    bytes: int = 0
    status: str = "OK"  # OK, WARN, FAILED
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def verify(path: str, program: str = "verify") -> Verification:
    """Read every member of the image to its end and check it against the table of contents
    recorded when the image was made. Truncation or corruption: FAILED. Entries that vanished
    or changed type while the backup ran (tar warned about them then): WARN."""
    start = time.monotonic()
    result = Verification(path)
    try:
        info = read_info(path, program)
    except ImageDamaged as exc:
        result.status = "FAILED"
        result.problems.append(str(exc))
        result.seconds = time.monotonic() - start
        return result
    toc: dict[str, str] | None = None
    seen: dict[str, str] = {}
    try:
        with open_image(path, program) as tf:
            for m in tf:
                name = _norm(m.name)
                result.members += 1
                kept: list[bytes] | None = [] if name == info.toc_member else None
                if m.isfile():
                    # Read once, in order: a packed image is a stream that cannot go back.
                    f = tf.extractfile(m)
                    if f is not None:
                        n = 0
                        while True:
                            chunk = f.read(1 << 20)
                            if not chunk:
                                break
                            n += len(chunk)
                            if kept is not None:
                                kept.append(chunk)
                        if n != m.size:
                            raise tarfile.ReadError(f"{name}: {n} of {m.size} bytes")
                        result.bytes += n
                if kept is not None:
                    toc = _parse_toc(b"".join(kept))
                    continue
                seen[name] = _KIND.get(m.type, "f")
            # A complete archive ends with two zero blocks; an image cut short at a member
            # boundary reads like a shorter archive without them. (A tape is read as a
            # stream, which cannot go back to look.)
            if isinstance(tf.stream, Unpacked):
                tail = tf.stream.at(tf.offset, 2 * tarfile.BLOCKSIZE)
                tf.stream.drain()  # a damaged or cut-short packed image fails here (zstd's status)
            elif not stat.S_ISCHR(os.stat(path).st_mode):
                tf.fileobj.seek(tf.offset)
                tail = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
            else:
                tail = b"\0" * (2 * tarfile.BLOCKSIZE)
            if len(tail) < 2 * tarfile.BLOCKSIZE or tail.strip(b"\0"):
                raise tarfile.ReadError("no end-of-archive marker: the image stops in the middle")
    except (tarfile.TarError, OSError, EOFError) as exc:
        result.status = "FAILED"
        result.problems.append(f"the image is damaged or incomplete after {result.members} members: {exc}")
        result.seconds = time.monotonic() - start
        return result
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
        if extra:
            result.status = "FAILED"
        elif result.warnings:
            result.status = "WARN"
    result.seconds = time.monotonic() - start
    return result


def _parse_toc(data: bytes) -> dict[str, str]:
    head, _, body = data.partition(b"\n")
    if head.decode(errors="replace") != TOC_VERSION:
        return {}
    out: dict[str, str] = {}
    for rec in body.split(b"\0"):
        if rec:
            out[_norm(os.fsdecode(rec[1:]))] = chr(rec[0])
    return out


# --- restore ----------------------------------------------------------------------------

@dataclass
class Survey:
    """What a restore needs to know before it writes anything, from one pass over the image."""

    unsafe: list[str] = field(default_factory=list)  # members that would land outside the target
    names: set[str] = field(default_factory=set)
    links: dict[str, str] = field(default_factory=dict)  # hard link member -> the member it links to
    incremental: bool = False  # a level backup: its GNU dumpdir records say what was deleted


def survey(path: str, program: str) -> Survey:
    out = Survey()
    for m in members(path, program):
        name = m.name
        if name.startswith("/") or ".." in name.split("/"):
            out.unsafe.append(name)
        elif m.islnk() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
            out.unsafe.append(f"{name} (hard link to {m.linkname})")
        if "GNU.dumpdir" in m.pax_headers or m.type == b"D":
            out.incremental = True
        out.names.add(_norm(name))
        if m.islnk():
            out.links[_norm(name)] = _norm(m.linkname)
    return out


def restore_argv(path: str, target: str, files: list[str], verbose: bool, apply_deletions: bool,
                 packed: bool = False) -> list[str]:
    argv = ["tar", "--extract", f"--file={path}", "-C", target, *TAR_EXTRACT_OPTS]
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
            apply_deletions: bool = False) -> int:
    """Extract into ``target``; refuses an image with members that would land outside it.

    Nothing in ``target`` is removed unless ``apply_deletions`` (a whole-file-system restore of
    a level backup, ``backup.chains.restore_whole``, which checks the target and says first
    what goes)."""
    if not os.path.isdir(target):
        raise AixsmitError(f"{program}: {target} is not a directory")
    found = survey(path, program)
    if found.unsafe:
        raise AixsmitError(f"{program}: {path}: {len(found.unsafe)} member(s) would be restored outside {target} "
                           f"(first: {found.unsafe[0]}); nothing was restored.")
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
    proc = subprocess.run(restore_argv(path, target, files, verbose, apply_deletions and found.incremental and not files,
                                       is_packed(path)),
                          capture_output=True, text=True, errors="surrogateescape")
    for line in proc.stdout.splitlines():
        emit(f"x {line}", "stdout")
    for line in proc.stderr.splitlines():
        emit(line, "stderr")
    if proc.returncode != 0:
        raise AixsmitError(f"{program}: restoring from {path} failed (tar exit status {proc.returncode}); see the messages above.")
    return 0
