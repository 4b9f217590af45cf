"""AIX stanza files: ``/image.data`` and ``vgname.data`` (aix-smit.md §4).

A stanza is a ``name:`` line followed by tab-indented ``KEY= value`` lines; stanzas are
separated by a blank line; ``#`` lines are comments. Names repeat (one ``fs_data:`` per file
system), so a file is a list of ``(name, {KEY: value})`` in order.

AIX's format has no escape, and a value is the rest of its line with blanks around it dropped;
a mount point may hold a newline, a control character, bytes that are not UTF-8 or blanks at
its ends. :func:`dump` writes those (and the backslash) as ``\\ooo`` octal escapes
(:mod:`aixsmit.backup.octal`, as fstab does); :func:`parse` reads them back, so every value comes
back exactly as it was given (docs/image-format.md).
"""

from __future__ import annotations

from ..errors import ParseError
from .octal import decode, encode

Stanzas = list[tuple[str, dict[str, str]]]


def dump(stanzas: Stanzas, header: str = "") -> str:
    out: list[str] = []
    if header:
        out += [f"##{line}" if not line.startswith("#") else line for line in header.splitlines()]
        out.append("")
    for name, keys in stanzas:
        out.append(f"{name}:")
        for key, value in keys.items():
            out.append(f"\t{key}= {_stored(str(value))}")
        out.append("")
    return "\n".join(out)


def _stored(value: str) -> str:
    """A value as its line holds it: escaped, and the blanks at its ends (which parse() would
    drop) as octal escapes too."""
    value = encode(value)
    body = value.strip()
    if body != value:
        lead = len(value) - len(value.lstrip())
        value = _octets(value[:lead]) + body + _octets(value[lead + len(body):])
    return value


def _octets(text: str) -> str:
    return "".join("\\%03o" % b for b in text.encode("utf-8"))


def parse(text: str) -> Stanzas:
    stanzas: Stanzas = []
    current: dict[str, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            if not line.rstrip().endswith(":"):
                raise ParseError(f"line {lineno}: expected a stanza name ending in ':': {line[:60]!r}")
            current = {}
            stanzas.append((line.rstrip()[:-1], current))
            continue
        if current is None:
            raise ParseError(f"line {lineno}: a value outside any stanza: {line[:60]!r}")
        key, sep, value = line.strip().partition("=")
        if not sep:
            raise ParseError(f"line {lineno}: expected KEY= value: {line[:60]!r}")
        current[key.strip()] = decode(value.strip())
    return stanzas


def first(stanzas: Stanzas, name: str) -> dict[str, str]:
    for n, keys in stanzas:
        if n == name:
            return keys
    return {}


def every(stanzas: Stanzas, name: str) -> list[dict[str, str]]:
    return [keys for n, keys in stanzas if n == name]
