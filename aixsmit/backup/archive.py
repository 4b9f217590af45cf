"""Reading images: information files, listings (lsmksysb, lsbackvg, restore -T),
verification against the table of contents, and extraction (restore -x, restvg)."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
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


def open_image(path: str, program: str = "listvgbackup") -> tarfile.TarFile:
    """An image in a file, on a disk (read in place) or on a tape (read as a stream)."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raise FileNotFoundError
        return tarfile.open(path, "r|" if stat.S_ISCHR(st.st_mode) else "r:")
    except (FileNotFoundError, IsADirectoryError):
        raise AixsmitError(f"0512-054 {program}: File {path} does not exist or is empty.")
    except (tarfile.TarError, OSError) as exc:
        raise AixsmitError(f"{program}: {path} is not a backup image: {exc}")


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
        for i, m in enumerate(tf):
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


def members(path: str, program: str = "listvgbackup") -> Iterator[tarfile.TarInfo]:
    with open_image(path, program) as tf:
        yield from tf


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
    info = read_info(path, program)
    toc: dict[str, str] | None = None
    seen: dict[str, str] = {}
    try:
        with open_image(path, program) as tf:
            for m in tf:
                name = _norm(m.name)
                result.members += 1
                if m.isfile():
                    f = tf.extractfile(m)
                    if f is not None:
                        n = 0
                        while True:
                            chunk = f.read(1 << 20)
                            if not chunk:
                                break
                            n += len(chunk)
                        if n != m.size:
                            raise tarfile.ReadError(f"{name}: {n} of {m.size} bytes")
                        result.bytes += n
                if name == info.toc_member:
                    f = tf.extractfile(m)
                    toc = _parse_toc(f.read() if f else b"")
                    continue
                seen[name] = _KIND.get(m.type, "f")
            # A complete archive ends with two zero blocks; an image cut short at a member
            # boundary reads like a shorter archive without them. (A tape is read as a
            # stream, which cannot go back to look.)
            if not stat.S_ISCHR(os.stat(path).st_mode):
                tf.fileobj.seek(tf.offset)
                tail = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
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


def restore_argv(path: str, target: str, files: list[str], verbose: bool, apply_deletions: bool) -> list[str]:
    argv = ["tar", "--extract", f"--file={path}", "-C", target, *TAR_EXTRACT_OPTS]
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
    proc = subprocess.run(restore_argv(path, target, files, verbose, apply_deletions and found.incremental and not files), capture_output=True, text=True,
                          errors="surrogateescape")
    for line in proc.stdout.splitlines():
        emit(f"x {line}", "stdout")
    for line in proc.stderr.splitlines():
        emit(line, "stderr")
    if proc.returncode != 0:
        raise AixsmitError(f"{program}: restoring from {path} failed (tar exit status {proc.returncode}); see the messages above.")
    return 0
