"""AIX's backup by name, ``backup -i`` (SMIT: Backup a File or Directory, ``backfile``).

The files and directories named are backed up relative to a working directory (SMIT's
"Current working DIRECTORY"), as ``./name``, directories with everything below them - what
SMIT's ``find NAME -print | backup -i`` does. With no names, they are read from standard
input one a line, as AIX's ``backup -i`` reads them, and only those names are archived.

On Linux the archive is a POSIX tar made by GNU tar (the image's flags: extended attributes,
sparse files), written under a temporary name and renamed only when complete; ``restore -x``
puts it back and ``restore -T`` lists it (``Files backed up by name``). On AIX the real
``backup -i`` runs, fed the same list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import AixsmitError
from .destination import partial_marker
from .tarrun import run_tar

Emit = Callable[[str, str], None]


@dataclass
class ByNameResult:
    path: str
    files: int  # names given to tar, directories' contents not counted
    bytes: int  # size of the archive
    status: str  # OK, WARN (a file changed or vanished while it was read)


def relative_names(names: Iterable[str], directory: str) -> list[str]:
    """``names`` as ``./path`` below ``directory`` (a host path, already resolved).

    An absolute name must lie below ``directory``; a name reaching out of it (``..``, or
    through a symbolic link to elsewhere), or one that does not exist, is refused before
    anything is written."""
    real_dir = os.path.realpath(directory)
    out: list[str] = []
    for raw in names:
        name = raw.rstrip("\n")
        if not name:
            continue
        if name.startswith("/"):
            rel = os.path.relpath(os.path.normpath(name), directory)
        else:
            rel = os.path.normpath(name)
        if rel == ".." or rel.startswith("../"):
            raise AixsmitError(f"backup: {name}: not below {directory}: names are backed up relative to the "
                               "current working directory")
        full = os.path.join(directory, rel)
        parent = os.path.realpath(os.path.dirname(full)) if rel != "." else real_dir
        if parent != real_dir and not parent.startswith(real_dir.rstrip("/") + "/"):
            raise AixsmitError(f"backup: {name}: reaches out of {directory} through a symbolic link")
        if not os.path.lexists(full):
            raise AixsmitError(f"backup: {name}: No such file or directory (in {directory}); nothing was backed up.")
        out.append("." if rel == "." else "./" + rel)
    if not out:
        raise AixsmitError("backup: no file or directory to back up was named", code=2)
    return out


def _file_systems(directory: str, names: list[str]) -> list[str]:
    """The mount points (host paths) of the file systems holding ``names`` below ``directory``
    and everything below the names' directories."""
    from ..fs.mounts import read_mountinfo

    try:
        mounts = [m.path for m in read_mountinfo() if m.path]
    except (OSError, AixsmitError):
        return []
    out = set()
    for n in names:
        real = os.path.realpath(os.path.join(directory, n))
        holding = [m for m in mounts if m == "/" or real == m or real.startswith(m.rstrip("/") + "/")]
        out.add(max(holding, key=len, default="/"))
        out.update(m for m in mounts if m.startswith(real.rstrip("/") + "/"))
    return sorted(out)


def backup_by_name(names: list[str], directory: str, dest: str, verbose: bool, recurse: bool,
                   emit: Emit) -> ByNameResult:
    """Back up ``names`` (as :func:`relative_names` gives them) from ``directory`` into the file
    or device ``dest`` (absolute). ``recurse``: directories with their contents (names given
    on the command line) or as named only (a list read from standard input, like find's).

    Errors: code 2 for a wrong destination, 3 when tar fails (no archive is left)."""
    from ..safefile import OutputFile
    from .destination import writable_destination

    if not dest.startswith("/"):
        raise AixsmitError("backup: the backup device or file name must start with a '/'.", code=2)
    # A file is created new by aixsmit (0600, O_EXCL|O_NOFOLLOW) and renamed over DEST when
    # complete: a name planted in a shared folder is replaced, never written through. Nobody's
    # data is written over: the file systems the names are on count as backed up.
    out = None
    if writable_destination("backup", dest, _file_systems(directory, names)) == "file":
        try:
            out = OutputFile(dest, marker=partial_marker())
        except OSError as exc:
            raise AixsmitError(f"backup: cannot write to {dest}: {exc.strerror}", code=3)
    emit(f"backup: Backing up {len(names)} name(s) from {directory} to {dest}, by name.", "stdout")
    work = tempfile.mkdtemp(prefix="aixsmit-byname-")
    try:
        listing = os.path.join(work, "names")
        with open(listing, "wb") as f:
            f.write(b"\0".join(os.fsencode(n) for n in names) + b"\0")
        argv = ["tar", "--create", "--force-local", f"--file={out.child_path if out else dest}", "--format=posix", "--xattrs",
                "--xattrs-include=*", "--sparse", "--totals", "-C", directory, "--null", "--verbatim-files-from",
                f"--files-from={listing}"]
        if not recurse:
            argv.insert(2, "--no-recursion")
        if verbose:
            argv += ["--verbose", "--quoting-style=escape"]
        proc = run_tar(argv, f"the backup to {dest}", emit, pass_fds=(out.fd,) if out else ())
        for line in proc.stdout.splitlines():
            emit(f"a {line}", "stdout")
        if out is not None:
            out.commit()
        status = "WARN" if proc.returncode == 1 else "OK"
        if status == "WARN":
            emit("backup: some files changed or vanished while they were read (see above).", "stderr")
        emit("backup: The backup is complete.", "stdout")
        return ByNameResult(dest, len(names), os.path.getsize(dest) if out else 0, status)
    finally:
        if out is not None:
            out.discard()
            out.close()
        shutil.rmtree(work, ignore_errors=True)


def aix_backup_by_name(names: list[str], directory: str, dest: str, verbose: bool, recurse: bool) -> int:
    """AIX: ``backup -i -q -f DEST [-v]`` in ``directory``, fed the names (recursed as find
    does for names given on the command line); its output goes straight to ours."""
    listed: list[str] = []
    for n in names:
        listed.append(n)
        if recurse and os.path.isdir(os.path.join(directory, n)) and not os.path.islink(os.path.join(directory, n)):
            for top, dirs, files in os.walk(os.path.join(directory, n)):
                rel = os.path.relpath(top, directory)
                listed += [f"./{os.path.join(rel, x)}" if rel != "." else f"./{x}" for x in sorted(dirs + files)]
    argv = ["backup", "-i", "-q", "-f", dest] + (["-v"] if verbose else [])
    proc = subprocess.run(argv, input="".join(f"{n}\n" for n in listed).encode(errors="surrogateescape"),
                          cwd=directory)
    return proc.returncode
