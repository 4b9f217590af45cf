"""Exclude lists as AIX applies them (aix-smit.md §4).

``/etc/exclude.rootvg`` (and ``/etc/exclude.VG``) hold one grep regular expression per line,
matched against the backup list, whose names are relative and start with ``./``: ``^./tmp/``
leaves out what is in /tmp but keeps /tmp itself, ``/temp/`` any directory named temp. An empty
or missing file leaves nothing out. ``-x FILE`` names whole file systems (mount points).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import AixsmitError


@dataclass(frozen=True)
class ExcludeList:
    patterns: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        compiled = []
        for i, p in enumerate(self.patterns, 1):
            try:
                compiled.append(re.compile(_ere_to_python(p)))
            except re.error as exc:
                raise AixsmitError(f"{self.source or 'exclude list'}: line {i}: '{p}' is not a valid regular expression: {exc}")
        object.__setattr__(self, "_re", compiled)
        # One combined expression is much faster than a loop over patterns for every file.
        combined = "|".join(f"(?:{c.pattern})" for c in compiled)
        object.__setattr__(self, "_any", re.compile(combined) if compiled else None)

    def excludes(self, name: str) -> bool:
        """``name`` is a list entry such as ``./tmp/x``."""
        return self._any is not None and self._any.search(name) is not None  # type: ignore[attr-defined]

    def __bool__(self) -> bool:
        return bool(self.patterns)


def _ere_to_python(pattern: str) -> str:
    # grep's bracket classes ([[:digit:]] …) are the one common ERE form Python lacks.
    classes = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
               "space": r"\s", "punct": r"!-/:-@\[-`{-~", "xdigit": "0-9A-Fa-f"}
    for name, repl in classes.items():
        pattern = pattern.replace(f"[:{name}:]", repl)
    return pattern


def load(path: str) -> ExcludeList:
    """Read an exclude file; a missing or empty file excludes nothing (as on AIX)."""
    from ..safefile import CONFIG_LIMIT, read_bounded

    try:
        text = os.fsdecode(read_bounded(path, CONFIG_LIMIT, "exclude list"))
    except FileNotFoundError:
        return ExcludeList((), str(path))
    return ExcludeList(tuple(line for line in text.splitlines() if line.strip()), str(path))


def load_fs_list(path: str) -> list[str]:
    """``-x FILE``: whole file systems to leave out, one mount point per line."""
    from ..safefile import CONFIG_LIMIT, read_bounded

    try:
        text = os.fsdecode(read_bounded(path, CONFIG_LIMIT, "file system exclude list"))
    except FileNotFoundError as exc:
        raise AixsmitError(f"{path}: cannot read the file system exclude list: {exc.strerror}")
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("/"):
            raise AixsmitError(f"{path}: line {i}: '{line}' is not a mount point (it must start with /)")
        out.append(line.rstrip("/") or "/")
    return out
