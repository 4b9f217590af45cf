"""A dialog's values become an argv, by SMIT's rules (aix-smit.md §1.10).

* flags first, in field order; positional arguments last;
* a field is sent only when its value differs from the default, unless it is required (must be
  filled, always sent) or marked ``always``;
* ring values map to arguments through ``emit`` (yes -> -m, no -> nothing), or ``flag VALUE``;
* with ``root: true`` and aixsmit running with ``--root DIR``, aixsmit's own commands get
  ``--root DIR`` right after the command's name (before any flag the command line starts with);
  AIX's own commands know no ``--root``, and a dialog that would run one under it is refused
  rather than run on this machine's own ``/``.
"""

from __future__ import annotations

import shlex
import sys

from .model import Field, MenuError, Screen


def _required_error(f: Field) -> MenuError:
    if f.type == "path":
        return MenuError(f'1820-035 A path or file name must be\nspecified in the entry field for:\n"{f.label}".')
    return MenuError(f'1820-033 A value must be specified in the\nentry field for:\n"{f.label}".')


def validate(f: Field, value: str) -> None:
    if not value:
        return
    if f.type == "numeric" and not value.lstrip("-").isdigit():
        raise MenuError(f'The value for this entry field must be a number:\n"{f.label}" = {value}')
    if f.type == "hex":
        try:
            int(value, 16)
        except ValueError:
            raise MenuError(f'The value for this entry field must be hexadecimal:\n"{f.label}" = {value}')
    if f.is_ring and value not in f.choices:
        raise MenuError(f'"{value}" is not one of the values of\n"{f.label}": {", ".join(f.choices)}')


def _option(flag: str, value: str) -> list[str]:
    """``flag value``; a value that starts with ``-`` is joined to its flag (``--target=-x``,
    ``-f-x``), so that it cannot be read as an option of its own."""
    if not value.startswith("-"):
        return [flag, value]
    return [f"{flag}={value}" if flag.startswith("--") else flag + value]


def field_args(f: Field, value: str) -> list[str]:
    if f.is_ring:
        if f.emit:
            return list(f.emit.get(value, []))
        return [value] if f.positional else (_option(f.flag, value) if f.flag else [value])
    if not value:
        return []
    if f.template:
        value = f.template.replace("{}", value)
    if f.type == "multi":
        vals = shlex.split(value)
        if f.positional:
            return vals
        return [a for v in vals for a in _option(f.flag, v)]
    return [value] if f.positional else _option(f.flag, value)


def build(screen: Screen, values: dict[str, str], host: str, root: str = "/") -> list[str]:
    if host not in screen.command:
        raise MenuError(f"{screen.title}: this task is not available on {host.upper() if host == 'aix' else host.title()}.")
    flags: list[str] = []
    positionals: list[str] = []
    for f in screen.fields:
        value = values.get(f.name, f.default)
        value = value.strip() if f.type != "path" else value
        if f.required and not value:
            raise _required_error(f)
        validate(f, value)
        if not (value != f.default or f.required or f.always):
            continue
        (positionals if f.positional else flags).extend(field_args(f, value))
    if any(p.startswith("-") for p in positionals):
        positionals.insert(0, "--")  # a name such as -x is a name, not an option
    argv = list(screen.command[host])
    if screen.root and root not in ("", "/"):
        if argv[:2] != ["aixsmit", "cmd"]:
            raise MenuError(f"{screen.title}: {argv[0]} works on this system's own /: it cannot run under --root {root}.")
        at = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
        argv[at:at] = ["--root", root]
    return argv + flags + positionals


def display(argv: list[str]) -> str:
    """The command line as F6 shows it and smit.script keeps it: a shell command that runs
    exactly ``argv``, and holds nothing a terminal acts on. Arguments are quoted as
    ``shlex.join`` does; one holding a control character, a byte that is not UTF-8 or another
    character :func:`aixsmit.fs.mounts.visible` makes visible is written ``$'...'`` with octal
    escapes of its UTF-8 bytes (bash, ksh and POSIX.1-2024 sh read it back to the same bytes)."""
    return " ".join(_quote(a) for a in argv)


def _quote(arg: str) -> str:
    from ..fs.mounts import visible

    if visible(arg, backslash=False) == arg:
        return shlex.quote(arg)
    out = []
    for c in arg:
        n = ord(c)
        if c in "\\'":
            out.append("\\" + c)
        elif 0xDC80 <= n <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
            out.append("\\%03o" % (n - 0xDC00))
        elif visible(c, backslash=False) != c:
            out.append("".join("\\%03o" % b for b in c.encode("utf-8")))
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


def runnable(argv: list[str]) -> list[str]:
    """The argv to execute: ``aixsmit`` is this very installation (the same interpreter)."""
    if argv and argv[0] == "aixsmit":
        return [sys.executable, "-m", "aixsmit", *argv[1:]]
    return argv
