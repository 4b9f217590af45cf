"""Reading tar headers fast: the members of an image, from large reads of its bytes.

Every command that reads an image (lsmksysb, restore -T, verify, restore -x, restvg, clone)
walks its headers through ``Reader``; on 50,000 small files Python's tarfile spent about
0.1-0.25 ms a member on that walk (frombuf, the pax records, 10 KB reads), more than GNU tar's
whole listing. Here the bytes come in reads of ``CHUNK`` (1 MiB), the common headers - ustar and
GNU magic, pax extended headers (``x``), GNU long names and links (``L``, ``K``), GNU dumpdir
records (``D``) - are parsed from the buffer, and a member's data is stepped over in the
buffer (or seeked over, in a file, when nothing is hashed). Optionally every MiB read is hashed
(XXH3-64, the image's own checksums, ``backup.sums``) on the way.

The parse is tarfile's, field for field (tarfile was the reader before, and its reading was
checked against GNU tar's extraction): the same checksum rule (unsigned or signed), the same
numbers (octal or base-256), the same names (ustar prefix, pax ``path``/``linkpath``, long
names, the same order of precedence between them), the same data skipping (data is skipped for
regular files and unknown types only, as ``tar --extract`` does: a symbolic link or directory
that claims a size has its "data" read as the next header, by GNU tar's extraction too) and the
same errors. What it does not parse itself - GNU sparse files (``S``, ``GNU.sparse.*`` pax
records), global pax headers (``g``), Solaris ``X`` headers, ``hdrcharset`` - it hands, from
the same bytes, to tarfile's own parser (``_fallback``): rare in an image, and parsed exactly as
before.

Errors: ``HeaderError`` (the same kinds and words as tarfile's: "empty header", "truncated
header", "end of file header", "bad checksum", "invalid header"), OSError from the stream.
"""

from __future__ import annotations

import os
from typing import Callable
from zlib import adler32

BLOCKSIZE = 512
CHUNK = 1 << 20  # one read; also the block of the image's checksums (sums.BLOCK)
EXT_LIMIT = 64 << 20  # an extended header (pax records, a long name) larger than this is damage
FALLBACK_LIMIT = 16 << 20  # what tarfile may read for one member (headers, a sparse file's map)

# tarfile's REGULAR_TYPES and SUPPORTED_TYPES (tarfile itself is imported only for the fallback:
# it imports shutil, and shutil bz2 and lzma, 10-80 ms of every reading command's start)
REGULAR = (b"0", b"\0", b"7", b"S")
SUPPORTED = frozenset((b"0", b"\0", b"7", b"S", b"1", b"2", b"3", b"4", b"5", b"6", b"L", b"K"))
DIRTYPE, SYMTYPE, LNKTYPE = b"5", b"2", b"1"
_FAST_TYPES = frozenset((b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"D"))
_EXT_TYPES = frozenset((b"x", b"L", b"K"))
_FALLBACK_KEYS = ("GNU.sparse.", "hdrcharset")
_ZEROS = ZEROS = bytes(BLOCKSIZE)


class HeaderError(Exception):
    """A header that is not one; ``kind``: empty, truncated, eof, invalid, subsequent."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


class Member:
    """One member as GNU tar extracts it: ``name``, ``linkname`` (str, as tarfile decodes them),
    ``size`` (bytes of the file), ``type`` (the typeflag, one byte), ``mode``, ``uid``, ``gid``,
    ``mtime``, ``pax_headers`` (dict), ``offset`` (its first header, extended ones included),
    ``offset_data`` (its data), ``end`` (where the next header is). The predicates are
    tarfile.TarInfo's. (mode, uid, gid, mtime and the pax records are decoded when asked.)"""

    __slots__ = ("name", "linkname", "size", "type", "offset", "offset_data", "end", "sparse", "_hdr", "_pax",
                 "_fields")

    def isreg(self) -> bool:
        return self.type in REGULAR

    isfile = isreg

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    @property
    def pax_headers(self) -> dict[str, str]:
        pax = self._pax
        if pax is None:
            return {}
        if not isinstance(pax, dict):
            self._pax = pax = parse_pax(pax) or {}
        return pax

    def pax_has(self, key: str) -> bool:
        """Whether a pax record ``key`` came with the member (without decoding them all)."""
        pax = self._pax
        if pax is None:
            return False
        if not isinstance(pax, dict) and b" " + key.encode() + b"=" not in pax:
            return False
        return key in self.pax_headers

    def _field(self, key: str, a: int, b: int, conv):
        fields = getattr(self, "_fields", None)
        if fields is not None and key in fields:
            return fields[key]
        value = self.pax_headers.get(key)
        if value is not None:
            try:
                return conv(value)
            except ValueError:
                return 0
        return _nti(self._hdr[a:b]) if self._hdr is not None else 0

    @property
    def mode(self) -> int:
        return self._field("mode", 100, 108, int)

    @property
    def uid(self) -> int:
        return self._field("uid", 108, 116, int)

    @property
    def gid(self) -> int:
        return self._field("gid", 116, 124, int)

    @property
    def mtime(self) -> float:
        return self._field("mtime", 136, 148, float)

    def __repr__(self) -> str:
        return f"<Member {self.name!r} type={self.type!r} size={self.size} at {self.offset}>"


def _nts(field: bytes) -> str:
    p = field.find(b"\0")
    if p != -1:
        field = field[:p]
    return field.decode("utf-8", "surrogateescape")


def _nti(field: bytes) -> int:
    """tarfile.nti: octal (NUL or space ended) or base-256 (GNU)."""
    if field[0] in (0o200, 0o377):
        n = 0
        for i in range(len(field) - 1):
            n = (n << 8) + field[i + 1]
        if field[0] == 0o377:
            n = -(256 ** (len(field) - 1) - n)
        return n
    p = field.find(b"\0")
    if p != -1:
        field = field[:p]
    try:
        return int(field.strip() or b"0", 8)
    except ValueError:
        raise HeaderError("invalid", "invalid header") from None


_OCTAL = b"01234567 \0"


def _clean(hdr: bytes) -> bool:
    """Whether the numeric fields hold only octal digits, spaces and NULs (then int() reads them)."""
    return not hdr[100:156].translate(None, _OCTAL) and not hdr[329:345].translate(None, _OCTAL)


def _number(field: bytes) -> int:
    try:
        return int(field.split(b"\0", 1)[0] or b"0", 8)
    except ValueError:
        return _nti(field)


def _checksum_ok(hdr: bytes) -> bool:
    """tarfile's check: the stored checksum is the unsigned or the signed sum of the header's
    bytes, the checksum field counted as spaces. HeaderError ("invalid header") when the field
    is no number."""
    # The unsigned sum: adler32's low half is 1 + the sum of the bytes, exact for 256 of them
    # (at most 65,280 < 65,521).
    unsigned = (adler32(hdr[:256]) & 0xFFFF) + (adler32(hdr[256:]) & 0xFFFF) - 2 - sum(hdr[148:156]) + 256
    stored = _nti(hdr[148:156])
    if stored == unsigned:
        return True
    import tarfile

    return stored in tarfile.calc_chksums(hdr)


_NUMERIC = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337), (337, 345))


def valid_header(block: bytes) -> bool:
    """Whether ``block`` is a header tarfile.TarInfo.frombuf accepts (checksum, numbers): where
    the reading goes on after a damaged one."""
    if len(block) != BLOCKSIZE or block == ZEROS:
        return False
    try:
        if not _checksum_ok(block):
            return False
        for a, b in _NUMERIC:
            _nti(block[a:b])
    except HeaderError:
        return False
    return True


def parse_pax(buf: bytes) -> dict[str, str] | None:
    """tarfile's parse of pax records ``"%d %s=%s\\n"``; None when a record asks for tarfile's
    own handling (sparse files, hdrcharset). HeaderError for a record of length 0."""
    out: dict[str, str] = {}
    pos, n = 0, len(buf)
    while pos < n:
        sp = buf.find(b" ", pos, pos + 24)
        if sp <= pos or not buf[pos:sp].isdigit():
            break
        eq = buf.find(b"=", sp + 1)
        if eq <= sp + 1:
            break
        length = int(buf[pos:sp])
        if length == 0:
            raise HeaderError("invalid", "invalid header")
        key = buf[sp + 1:eq].decode("utf-8", "surrogateescape")
        if key.startswith(_FALLBACK_KEYS):
            return None
        out[key] = buf[eq + 1:pos + length - 1].decode("utf-8", "surrogateescape")
        pos += length
    return out


class Reader:
    """The members of the tar bytes in ``stream`` (a raw, unbuffered binary file or stream),
    read ``CHUNK`` at a time. ``seekable``: the stream is a file or disk whose data may be
    seeked over (when ``hashing`` is off) and whose ``size`` is known. ``hashing``: the XXH3-64
    of every ``CHUNK`` of the stream from byte 0 is kept in ``digests`` (the stream is then read
    whole, never seeked).

    ``next()`` returns the next Member, None at the end-of-archive blocks, or raises
    HeaderError / OSError; ``offset`` is then where the next header is expected."""

    def __init__(self, stream, seekable: bool = False, size: int | None = None, hashing: bool = False):
        self.stream = stream
        self.seekable = seekable and not hashing
        self.size = size
        self.buf = b""
        self.base = 0  # the stream offset of buf[0]
        self.read_to = 0  # the stream offset read so far
        self.offset = 0
        self.eof = False
        self.digests: list[int] | None = [] if hashing else None
        if hashing:
            import xxhash

            self._digest: Callable[[bytes], int] = xxhash.xxh3_64_intdigest
        self.global_pax: dict[str, str] = {}
        self.current: Member | None = None
        self._seq: int | None = None  # where the member being parsed starts: kept in the buffer

    # --- the buffer ---

    def _read_chunk(self) -> bytes:
        """The next CHUNK of the stream (less only at its end)."""
        stream = self.stream
        data = stream.read(CHUNK)
        if data and len(data) < CHUNK:
            parts = [data]
            got = len(data)
            while got < CHUNK:
                more = stream.read(CHUNK - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data or b""

    def _have(self, end: int, keep: int) -> int:
        """Make the buffer hold the stream up to ``end`` (or its end), keeping what lies from
        ``keep`` on; the stream offset up to which it is held."""
        if self.read_to >= end or self.eof:
            return min(end, self.read_to)
        if self.seekable and keep > self.read_to:
            # Seek over what nobody needs (data of a file, nothing hashed).
            self.stream.seek(keep)
            self.buf, self.base, self.read_to = b"", keep, keep
        while self.read_to < end:
            drop = min(keep, self.read_to) - self.base
            if drop > 0:
                self.buf = self.buf[drop:]
                self.base += drop
            chunk = self._read_chunk()
            if not chunk:
                self.eof = True
                break
            if self.digests is not None:
                self.digests.append(self._digest(chunk))
            self.buf = self.buf + chunk if self.buf else chunk
            self.read_to += len(chunk)
            if len(chunk) < CHUNK:
                self.eof = True
                break
        return min(end, self.read_to)

    def read_at(self, at: int, n: int) -> bytes:
        """``n`` bytes from stream offset ``at`` (fewer at the end); ``at`` must not lie before
        what the buffer still holds."""
        seq = self._seq
        got = self._have(at + n, at if seq is None or seq > at else seq)
        if got <= at:
            return b""
        i = at - self.base
        assert i >= 0, (at, self.base)
        return self.buf[i:i + (got - at)]

    def drain(self) -> int:
        """Read the stream to its end (hashing it, when hashing); its length."""
        while not self.eof:
            self._have(self.read_to + CHUNK, self.read_to)
        return self.read_to

    # --- members ---

    def next(self) -> Member | None:
        at = self.offset
        self._seq = at  # (the fallback parses the member again from its first byte)
        try:
            try:
                m = self._fast(at)
            except _Fallback:
                m = self._fallback(at)
        except HeaderError as exc:
            if exc.kind != "eof":
                raise
            m = None
        finally:
            self._seq = None
        self.current = m
        if m is not None:
            self.offset = m.end
        return m

    def _header(self, at: int, first: bool) -> bytes:
        hdr = self.read_at(at, BLOCKSIZE)
        if len(hdr) != BLOCKSIZE:
            kind, text = ("empty", "empty header") if not hdr else ("truncated", "truncated header")
            raise HeaderError(kind if first else "subsequent", text)
        if hdr == _ZEROS:
            raise HeaderError("eof" if first else "subsequent", "end of file header")
        try:
            ok = _checksum_ok(hdr)
        except HeaderError as exc:
            raise HeaderError("invalid" if first else "subsequent", str(exc)) from None
        if not ok:
            raise HeaderError("invalid" if first else "subsequent", "bad checksum")
        return hdr

    def _fast(self, start: int) -> Member | None:
        if self.global_pax:
            raise _Fallback
        at = start
        exts: list[tuple[bytes, object]] = []  # the extended headers before the member, in order
        buf = self.buf
        while True:
            i = at - self.base
            hdr = buf[i:i + BLOCKSIZE]
            clean = (len(hdr) == BLOCKSIZE and not hdr[100:156].translate(None, _OCTAL)
                     and not hdr[329:345].translate(None, _OCTAL))
            if clean and hdr[154:156] == b"\0 " and hdr[148:154].isdigit():
                # The checksum as GNU tar and tarfile write it (six octal digits): the unsigned sum
                # of the bytes, the checksum field counted as spaces (adler32's low half is 1 +
                # the sum of the bytes, exact for 256 of them).
                clean = int(hdr[148:154], 8) == ((adler32(hdr[:256]) & 0xFFFF) + (adler32(hdr[256:]) & 0xFFFF)
                                                 - sum(hdr[148:156]) + 254)
            elif clean:
                try:
                    clean = hdr != _ZEROS and _checksum_ok(hdr)
                except HeaderError:
                    clean = False
            if not clean:
                hdr = self._header(at, not exts)  # (the slow way, for its exact error)
                buf = self.buf
            typ = hdr[156:157]
            if typ not in _EXT_TYPES:
                break
            try:
                size = _number(hdr[124:136])
                if not clean:
                    for a, b in ((100, 108), (108, 116), (116, 124), (136, 148), (329, 337), (337, 345)):
                        _nti(hdr[a:b])
            except HeaderError as exc:
                raise HeaderError("subsequent" if exts else exc.kind, str(exc)) from None
            if size > EXT_LIMIT or size < 0:
                raise HeaderError("subsequent" if exts else "invalid", f"an extended header of {size} bytes")
            padded = (size + BLOCKSIZE - 1) & ~(BLOCKSIZE - 1)
            i = at + BLOCKSIZE - self.base
            body = buf[i:i + padded] if i + padded <= len(buf) else self.read_at(at + BLOCKSIZE, padded)
            buf = self.buf
            at += BLOCKSIZE + padded
            if typ == b"x":
                if not (b"path=" in body or b" size=" in body or b"GNU.sparse." in body or b"hdrcharset=" in body):
                    exts.append((b"x", body))  # parsed only if asked (pax_headers, mtime, uid, gid)
                    continue
                recs = parse_pax(body)
                if recs is None:
                    raise _Fallback
                exts.append((b"X", recs))
            else:
                exts.append((typ, _nts(body)))
        if typ not in _FAST_TYPES:
            raise _Fallback
        m = Member()
        m._hdr = hdr
        m._pax = None
        try:
            if not clean:
                for a, b in ((100, 108), (108, 116), (116, 124), (136, 148), (329, 337), (337, 345)):
                    _nti(hdr[a:b])
            m.size = _number(hdr[124:136])
        except HeaderError as exc:
            raise HeaderError("subsequent" if exts else exc.kind, str(exc)) from None
        m.type = typ
        name = hdr[:100]
        p = name.find(b"\0")
        m.name = (name if p < 0 else name[:p]).decode("utf-8", "surrogateescape")
        link = hdr[157:257]
        if link[0]:
            p = link.find(b"\0")
            m.linkname = (link if p < 0 else link[:p]).decode("utf-8", "surrogateescape")
        else:
            m.linkname = ""
        if typ == b"\0" and m.name.endswith("/"):
            m.type = typ = DIRTYPE  # V7: a directory is a file whose name ends with a slash
        if typ == DIRTYPE:
            m.name = m.name.rstrip("/")
        if hdr[345]:
            m.name = _nts(hdr[345:500]) + "/" + m.name
            if typ == DIRTYPE:
                m.name = m.name.rstrip("/")
        m.offset = start
        m.offset_data = at + BLOCKSIZE
        m.sparse = False
        # tarfile applies the innermost extended header first, the outer ones over it.
        for typ_e, value in reversed(exts):
            if typ_e == b"L":
                m.name = value
                if m.type == DIRTYPE:
                    m.name = m.name.removesuffix("/")
            elif typ_e == b"K":
                m.linkname = value
            elif typ_e == b"x":
                m._pax = value  # none of the records changes the name, link or size
            else:
                _apply_pax(m, value)
        if m.size < 0:
            raise HeaderError("invalid", "invalid header")
        m.end = m.offset_data + ((m.size + BLOCKSIZE - 1) & ~(BLOCKSIZE - 1)) \
            if typ in REGULAR or typ not in SUPPORTED else m.offset_data
        return m

    def _fallback(self, start: int) -> Member | None:
        """The member at ``start`` parsed by tarfile itself, from the same bytes."""
        import tarfile

        shim = _Shim(self, start)
        try:
            info = tarfile.TarInfo.fromtarfile(shim)
        except tarfile.EOFHeaderError:
            raise HeaderError("eof", "end of file header") from None
        except tarfile.EmptyHeaderError:
            raise HeaderError("empty", "empty header") from None
        except tarfile.TruncatedHeaderError:
            raise HeaderError("truncated", "truncated header") from None
        except tarfile.SubsequentHeaderError as exc:
            raise HeaderError("subsequent", str(exc)) from None
        except tarfile.HeaderError as exc:
            raise HeaderError("invalid", str(exc)) from None
        except (ValueError, IndexError, EOFError, OverflowError) as exc:
            # (tarfile's sparse-map parse fails this way on a map the image does not hold)
            raise HeaderError("subsequent", f"a damaged sparse file map ({exc})") from None
        m = Member()
        for k in ("name", "linkname", "size", "type", "offset", "offset_data"):
            setattr(m, k, getattr(info, k))
        m._hdr = None
        m._pax = dict(info.pax_headers)
        m._fields = {"mode": info.mode, "uid": info.uid, "gid": info.gid, "mtime": info.mtime}
        m.sparse = info.sparse is not None
        if m.size < 0:
            raise HeaderError("invalid", "invalid header")
        m.end = shim.offset
        return m

    def data(self, m: Member, limit: int) -> bytes:
        """The data of ``m`` (the member just returned by ``next``), at most ``limit`` bytes.
        OSError when the image does not hold it all, ValueError for a sparse member."""
        if m is not self.current:
            raise ValueError("only the data of the member just read can be read")
        if m.sparse:
            raise ValueError(f"{m.name} is a sparse file")
        n = min(m.size, limit)
        got = self.read_at(m.offset_data, n)
        if len(got) < n:
            raise OSError(5, "unexpected end of data")
        return got

    def extractfile(self, m: Member):
        """tarfile's ``extractfile`` for the member just read: an object whose ``read()`` gives its data."""
        import io

        return io.BytesIO(self.data(m, m.size))


def _ended(m: Member) -> Member:
    """Set where the member after ``m`` starts: past its data for a regular file or an unknown
    type, right after its header for the others (tarfile's rule, and tar --extract's)."""
    if m.size < 0:
        raise HeaderError("invalid", "invalid header")
    m.end = m.offset_data + ((m.size + BLOCKSIZE - 1) & ~(BLOCKSIZE - 1)) \
        if m.type in REGULAR or m.type not in SUPPORTED else m.offset_data
    return m


class _Fallback(Exception):
    """The member needs tarfile's own parser."""


class _ShimFile:
    def __init__(self, reader: Reader, at: int):
        self.reader, self.pos, self.start = reader, at, at

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = EXT_LIMIT
        if self.pos + n - self.start > FALLBACK_LIMIT:  # (headers, or a sparse file's map: bounded)
            import tarfile

            raise tarfile.SubsequentHeaderError(f"more than {FALLBACK_LIMIT >> 20} MB of headers for one member")
        data = self.reader.read_at(self.pos, n)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos


class _Shim:
    """What tarfile.TarInfo.fromtarfile needs of a TarFile, over the Reader's buffer."""

    def __init__(self, reader: Reader, at: int):
        self.fileobj = _ShimFile(reader, at)
        self.offset = at
        self.encoding = "utf-8"
        self.errors = "surrogateescape"
        self.pax_headers = reader.global_pax


def _apply_pax(m: Member, recs: dict[str, str]) -> None:
    """tarfile's _apply_pax_info for the name, link and size (GNU.sparse.* never reaches it;
    mode, uid, gid and mtime are read from the records when asked)."""
    for key, value in recs.items():
        if key == "path":
            m.name = value.rstrip("/")
        elif key == "linkpath":
            m.linkname = value
        elif key == "size":
            try:
                m.size = int(value)
            except ValueError:
                m.size = 0
    m._pax = dict(recs)


def open_size(stream) -> int | None:
    """The size of what ``stream`` reads, when it is a file or block device."""
    try:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            pos = stream.tell()
            size = stream.seek(0, os.SEEK_END)
            stream.seek(pos)
        return size
    except (OSError, AttributeError, ValueError):
        return None
