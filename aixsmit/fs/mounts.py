"""Mount tables: the AIX ``mount`` listing and Linux ``/proc/self/mountinfo``, parsed exactly.

Both parsers return frozen :class:`Mount` values in file order. A line that does not have the
expected form raises :class:`ParseError` naming its line number; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from collections.abc import Iterable

from ..errors import ParseError

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True, unsafe_hash=True)
class Mount:
    """One mounted file system: a value, never changed once made (make another with
    ``dataclasses.replace``), hashable and compared by its fields.

    ``mount_point`` is as the operator sees it: relative to ``--root`` when one is given
    (``/`` is the root itself); ``path`` is always the absolute path on this host.

    Not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, and
    making the 100,000 values of a large mount table took 7 times as long that way.
    """

    node: str  # remote host (AIX node column); "" for a local mount
    device: str  # the mounted object: /dev/hd4, /dev/loop3, server:/export, tmpfs
    mount_point: str
    vfs: str
    date: str  # AIX "Mon DD HH:MM"; "" where the source has no date (Linux mountinfo)
    options: tuple[str, ...]
    # What only mountinfo knows (empty defaults for AIX rows):
    mount_id: int = 0
    parent_id: int = 0
    dev: str = ""  # "major:minor", the st_dev of every file on it
    fs_root: str = "/"  # root of the mount inside its file system; not "/" for bind mounts
    super_options: tuple[str, ...] = ()
    path: str = ""
    # Set when --root DIR is not a mount point: this entry is the part below DIR of the file
    # system mounted at host_mount, playing "/" (path is DIR, fs_root its place in the FS).
    host_mount: str = ""
    # Mount propagation as ``findmnt -o PROPAGATION`` shows it: shared, private, private,slave,
    # shared,slave or unbindable ("" where the source does not say: AIX rows).
    propagation: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            self.path = self.mount_point

    @property
    def all_options(self) -> tuple[str, ...]:
        """Per-mount and file-system options, as ``findmnt -o OPTIONS`` shows them."""
        key = (self.options, self.super_options)
        merged = _MERGED.get(key)
        if merged is None:
            if len(_MERGED) > 4096:
                _MERGED.clear()
            merged = _MERGED[key] = merge_options(self.options, self.super_options)
        return merged

    @property
    def natural_root(self) -> str:
        return natural_root(self.vfs, self.super_options)

    @property
    def is_bind(self) -> bool:
        """A bind mount: its root is not the one a plain mount of the device gets (a btrfs
        ``subvol=`` mount is not a bind)."""
        return self.fs_root != self.natural_root

    def to_json(self, data_class: str | None = None) -> dict:
        out = {
            "node": self.node,
            "device": self.device,
            "mount_point": self.mount_point,
            "vfs": self.vfs,
            "date": self.date,
            "options": list(self.all_options),
            "fsroot": self.fs_root,
        }
        if data_class is not None:
            out["class"] = data_class
        return out


# Mounts share their options: each distinct pair is merged once (see Mount.all_options).
_MERGED: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}


def natural_root(vfs: str, fs_options: tuple[str, ...]) -> str:
    """The FSROOT a plain mount of the device gets: ``/``, or a btrfs mount's ``subvol=``."""
    if vfs == "btrfs":
        for o in fs_options:
            if o.startswith("subvol="):
                return o[len("subvol="):] or "/"
    return "/"


def merge_options(vfs_options: tuple[str, ...], fs_options: tuple[str, ...]) -> tuple[str, ...]:
    """Per-mount then super-block options, as ``findmnt -o OPTIONS`` shows them (libmount drops
    the super block's own rw/ro, which the per-mount flags already say)."""
    return tuple(o for o in vfs_options if o) + tuple(o for o in fs_options if o and o not in ("rw", "ro"))


# --- Linux mountinfo ---------------------------------------------------------------------

# Patterns are compiled on first use (re's own cache), not when the module is imported: every
# command imports this module, few read a mount table.
_OCTAL = r"\\([0-7]{3})"


def _unoctal(match: re.Match[str]) -> str:
    value = int(match.group(1), 8)
    # Bytes above 127 map to the surrogate os.fsdecode would have produced for the raw byte.
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` space, ``\\011`` tab, ``\\012`` newline, ``\\134``)."""
    if "\\" not in field:
        return field
    # The space first, by plain replacement: the escape a mount table holds most. No other
    # escape can hide one (each backslash starts its own four characters, the backslash itself
    # is \\134), so what is left for the pattern is exactly what it would have found.
    field = field.replace("\\040", " ")
    return re.sub(_OCTAL, _unoctal, field) if "\\" in field else field


_ESCAPES = str.maketrans({" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"})


def escape(field: str) -> str:
    """Escape as the kernel's ``seq_escape(m, s, " \\t\\n\\\\")`` does (used by tests and benches)."""
    return field.translate(_ESCAPES)


def _octal(c: str) -> str:
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # an undecodable byte, as os.fsdecode keeps it
        n -= 0xDC00
    if n < 0x100:
        return "\\%03o" % n
    return "\\u%04x" % n


def _hidden(c: str) -> bool:
    n = ord(c)
    if n < 0x20 or n == 0x7F or c == "\\":
        return True
    if n < 0x80:
        return False
    if 0xDC80 <= n <= 0xDCFF or 0x80 <= n < 0xA0:
        return True
    import unicodedata

    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs")


def visible(text: str, spaces: bool = False, backslash: bool = True) -> str:
    """``text`` (a mount point, device, file or group name) safe to print on a terminal or put
    in a one-line message: control characters (ESC, tab, newline, C1, DEL), Unicode format and
    separator characters, undecodable bytes and the backslash itself become ``\\ooo`` (octal, as
    mountinfo writes them; ``\\uXXXX`` above U+00FF), so nothing a name holds can move the
    cursor, forge a line or change colours, and two different names never look alike.
    ``spaces=True`` escapes spaces too (``\\040``), for a column of a table. ``backslash=False``
    keeps backslashes as they are: for a whole message or log line whose names were made visible
    already (then a second pass changes nothing). The one escaper of text shown to people:
    the CLI's errors, tables, image listings, holders, schedules, mail and syslog, job logs."""
    if text.isascii() and text.isprintable() and ("\\" not in text or not backslash):
        return text.replace(" ", "\\040") if spaces else text
    out = "".join(_octal(c) if _hidden(c) and (backslash or c != "\\") else c for c in text)
    return out.replace(" ", "\\040") if spaces else out


# A line as the kernel writes it (fs/proc_namespace.c, show_mountinfo): six fields, the optional
# fields (none of them "-"), " - ", then type, source and super options; no field empty, none
# holding white space (the kernel escapes space, tab, newline and backslash). Every line of
# /proc/self/mountinfo has this shape, and the whole table is read with one search; a table
# with any line of another shape is read field by field instead, which accepts what it can and
# names the line it cannot.
_LINE = r"^(\d+) (\d+) (\d+:\d+) (\S+) (/\S*) (\S+)((?: (?!- )\S+)*) - (\S+) (\S+) (\S+)$"


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/PID/mountinfo`` text (decode bytes with ``os.fsdecode`` first).

    Raises :class:`ParseError` naming the first line that does not have mountinfo's form."""
    rows = re.findall(_LINE, text, re.M | re.A)
    if len(rows) != text.count("\n") + (not text.endswith("\n")):
        return _parse_mountinfo_lines(text)  # a line of another shape, or an empty one
    mounts: list[Mount] = []
    add = mounts.append
    # Mounts share their option strings and optional fields: each distinct one is split once.
    split_cache: dict[str, tuple[str, ...]] = {}
    propagation_cache: dict[str, str] = {}
    for mount_id, parent_id, dev, fs_root, mount_point, options, optional, vfs, source, super_opts in rows:
        if "\\" in mount_point:
            mount_point = unescape(mount_point)
        if "\\" in fs_root:
            fs_root = unescape(fs_root)
        if "\\" in vfs:
            vfs = unescape(vfs)
        if "\\" in source:
            source = unescape(source)
        opts = split_cache.get(options)
        if opts is None:
            opts = split_cache[options] = tuple(options.split(","))
        fs_opts = split_cache.get(super_opts)
        if fs_opts is None:
            fs_opts = split_cache[super_opts] = tuple(super_opts.split(","))
        propagation = propagation_cache.get(optional)
        if propagation is None:
            propagation = propagation_cache[optional] = _propagation(optional.split(" ")[1:])
        add(Mount("", source, mount_point, vfs, "", opts, int(mount_id), int(parent_id), dev, fs_root, fs_opts,
                  mount_point, "", propagation))
    return mounts


def _parse_mountinfo_lines(text: str) -> list[Mount]:
    """The field-by-field reading of :func:`parse_mountinfo`, for a table not all of whose lines
    have the kernel's shape: lenient where it can be, and the error names the line."""
    mounts: list[Mount] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            raise ParseError(f"line {lineno}: no ' - ' separator after the optional fields: {line[:80]!r}")
        if sep < 6 or len(fields) - sep - 1 < 3:
            raise ParseError(f"line {lineno}: expected 6 fields, ' - ', then type, source and options: {line[:80]!r}")
        try:
            mount_id = int(fields[0])
            parent_id = int(fields[1])
        except ValueError:
            raise ParseError(f"line {lineno}: mount ID and parent ID must be numbers: {line[:80]!r}")
        dev = fields[2]
        major, _, minor = dev.partition(":")
        if not (major.isdigit() and minor.isdigit()):
            raise ParseError(f"line {lineno}: '{dev}' is not a major:minor device number")
        mount_point = unescape(fields[4])
        if not mount_point.startswith("/"):
            raise ParseError(f"line {lineno}: mount point '{mount_point}' is not an absolute path")
        vfs = unescape(fields[sep + 1])
        source = unescape(fields[sep + 2])
        # Super options cannot contain a raw space, but be lenient if a source did split them.
        super_opts = " ".join(fields[sep + 3:])
        mounts.append(
            Mount(
                propagation=_propagation(fields[6:sep]),
                node="",
                device=source,
                mount_point=mount_point,
                vfs=vfs,
                date="",
                options=tuple(fields[5].split(",")),
                mount_id=mount_id,
                parent_id=parent_id,
                dev=dev,
                fs_root=unescape(fields[3]),
                super_options=tuple(super_opts.split(",")) if super_opts else (),
            )
        )
    return mounts


def _propagation(optional: list[str]) -> str:
    """findmnt's PROPAGATION from mountinfo's optional fields (shared:N, master:N, unbindable)."""
    tags = {f.split(":", 1)[0] for f in optional}
    if "unbindable" in tags:
        return "unbindable"
    out = "shared" if "shared" in tags else "private"
    return out + ",slave" if "master" in tags else out


def read_mountinfo(path: str = "/proc/self/mountinfo") -> list[Mount]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_mountinfo(os.fsdecode(data))
    except ParseError as exc:
        raise ParseError(f"{path}: {exc}") from None


# --- AIX mount listing ---------------------------------------------------------------------

def _is_date(tokens: list[str], i: int) -> bool:
    if i + 3 > len(tokens):
        return False
    mon, day, hhmm = tokens[i : i + 3]
    return (
        mon in MONTHS
        and day.isdigit()
        and len(day) <= 2
        and re.fullmatch(r"\d{1,2}:\d{2}", hhmm) is not None
    )


def parse_aix_mount(text: str) -> list[Mount]:
    """Parse the output of AIX ``mount`` with no arguments (aix-smit.md §3.1).

    The header and dashed line are optional. Columns overflow when a mount point is long, so
    the row is split on white space and anchored on the three-token date: a row has node (or
    not), mounted, mounted over, vfs, date (3 tokens) and at most one options token.
    """
    mounts: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        tokens = stripped.split()
        if lineno <= 2 and (tokens[:2] == ["node", "mounted"] or set(stripped) <= set("- ")):
            continue
        # The date sits at index 3 for a local row and 4 for a row with a node.
        if _is_date(tokens, 3) and len(tokens) in (6, 7) and not (
            _is_date(tokens, 4) and line[:1] != " "
        ):
            node, rest = "", tokens
        elif _is_date(tokens, 4) and len(tokens) in (7, 8):
            node, rest = tokens[0], tokens[1:]
        else:
            raise ParseError(
                f"line {lineno}: expected [node] mounted 'mounted over' vfs 'Mon DD HH:MM' [options]: {stripped[:80]!r}"
            )
        options = tuple(o for o in rest[6].split(",") if o) if len(rest) == 7 else ()
        mounts.append(
            Mount(
                node=node,
                device=rest[0],
                mount_point=rest[1],
                vfs=rest[2],
                date=" ".join(rest[3:6]),
                options=options,
            )
        )
    return mounts


# --- --root ----------------------------------------------------------------------------

def relative_to_root(mounts: Iterable[Mount], root: str) -> list[Mount]:
    """Keep the mounts at or below ``root`` and show them relative to it (``root`` becomes ``/``).

    When ``root`` is not itself a mount point, the file system holding it plays ``/``: its part
    below ``root`` comes first, as mount point ``/`` with ``path`` ``root``, ``fs_root`` its
    place in that file system and ``host_mount`` where the file system is really mounted.
    """
    root = os.path.normpath(root)
    mounts = list(mounts)
    if root == "/":
        return mounts
    out = []
    prefix = root + "/"
    holder = None
    for m in mounts:
        if m.path == root:
            out.append(replace(m, mount_point="/"))
        elif m.path.startswith(prefix):
            out.append(replace(m, mount_point=m.path[len(root):]))
        elif m.path == "/" or root.startswith(m.path.rstrip("/") + "/"):
            if holder is None or len(m.path) >= len(holder.path):
                holder = m  # the deepest mount above root; the last listed at a path is on top
    if holder is not None and not any(m.mount_point == "/" for m in out):
        part = root[len(holder.path.rstrip("/")):]
        fs_root = holder.fs_root.rstrip("/") + part
        out.insert(0, replace(holder, mount_point="/", path=root, fs_root=fs_root, host_mount=holder.path))
    return out
