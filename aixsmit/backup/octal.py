"""Reversible ``\\ooo`` escapes for names kept in line-based files: the values of ``image.data``
stanzas and the fields of the backup log (vgbackuplog).

AIX's stanza files and vgbackuplog have no escape: a value is the rest of its line, a log field
ends at ``;``. A mount point or a file name is someone else's choice and may hold a newline, a
``;``, a control character or bytes that are not UTF-8. :func:`encode` writes each UTF-8 byte
of such a character (and of the backslash itself) as a backslash and three octal digits, as
``/proc/self/mountinfo`` and fstab do, so every record stays one line of valid UTF-8;
:func:`decode` gives back exactly the name (undecodable bytes as ``os.fsdecode`` has them).
A backslash not followed by three octal digits is kept as it is (a file written by AIX).

These are stored forms, not display forms: text shown to people goes through
:func:`aixsmit.fs.mounts.visible`.
"""

from __future__ import annotations

import re

# What str.splitlines() breaks a line at, beyond the C0 and C1 controls: a stored value must
# not hold one.
_BREAKS = frozenset("\u2028\u2029")
_OCTAL = re.compile(rb"\\([0-3][0-7]{2})")


def _needs(c: str, also: str) -> bool:
    n = ord(c)
    return n < 0x20 or 0x7F <= n < 0xA0 or c == "\\" or c in also or c in _BREAKS or 0xDC80 <= n <= 0xDCFF


def encode(text: str, also: str = "") -> str:
    """``text`` with ``\\ooo`` for every byte of each control character (C0, DEL, C1), line
    separator (U+0085, U+2028, U+2029), backslash, character of ``also`` and byte that is not
    UTF-8 (a surrogate of ``os.fsdecode``). Printable text without them is returned unchanged."""
    if text.isascii() and text.isprintable() and "\\" not in text and not any(c in text for c in also):
        return text
    out = []
    for c in text:
        if not _needs(c, also):
            out.append(c)
        elif 0xDC80 <= ord(c) <= 0xDCFF:
            out.append("\\%03o" % (ord(c) - 0xDC00))
        else:
            out.append("".join("\\%03o" % b for b in c.encode("utf-8")))
    return "".join(out)


def _byte(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 8),))


def decode(text: str) -> str:
    """Undo :func:`encode`: each ``\\ooo`` is a byte; the bytes are read as UTF-8, what is not
    UTF-8 kept as ``os.fsdecode`` keeps it."""
    if "\\" not in text:
        return text
    raw = _OCTAL.sub(_byte, text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")
