"""``aixsmit cmd backup -i``: AIX's backup by name (the face of :mod:`aixsmit.backup.byname`)."""

from __future__ import annotations

import os
import sys

from ..errors import AixsmitError
from ..fs.table import System
from .common import emit


def _directory(system: System, given: str | None) -> str:
    """The host path of the working directory: -C DIR (inside --root when there is one), else
    the current directory (the root itself under --root)."""
    if given is None:
        path = os.getcwd() if system.root == "/" else system.root
    else:
        if not given.startswith("/"):
            given = os.path.join(os.getcwd() if system.root == "/" else "/", given)
        path = system.abs_path(given)
        if system.root != "/":
            real, root = os.path.realpath(path), os.path.realpath(system.root)
            if real != root and not real.startswith(root.rstrip("/") + "/"):
                raise AixsmitError(f"backup: -C {given} leads out of --root {system.root}", code=2)
    if not os.path.isdir(path):
        raise AixsmitError(f"backup: -C {given or path}: not a directory", code=2)
    return path


def cmd_backup_by_name(args) -> int:
    from ..backup.byname import aix_backup_by_name, backup_by_name, relative_names

    if args.level is not None or args.u:
        raise AixsmitError("backup: -i backs up by name: give no level and no -u", code=2)
    system = System(root=args.root)
    directory = _directory(system, args.C)
    recurse = bool(args.fs)
    names = relative_names(args.fs if args.fs else sys.stdin, directory)
    if system.host.name == "aix":
        return aix_backup_by_name(names, directory, args.f, args.v, recurse)
    res = backup_by_name(names, directory, args.f, args.v, recurse, emit)
    return 0 if res.status in ("OK", "WARN") else 3
