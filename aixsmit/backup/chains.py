"""Chains of level backups: a full (level 0) and the level 1s measured against it.

A schedule keeps each chain in a folder of its own, so that a level 1 can never be read with
the wrong full::

    DEST/KEY/STAMP/STAMP.L0.tar        the full backup that starts the chain
    DEST/KEY/STAMP/STAMP2.L1.tar       each daily, measured against that full

``KEY`` is :func:`incremental.fs_key` of the mount point and ``STAMP`` ``YYYYmmdd-HHMMSS``.
The GNU tar snapshot of the full is kept in the state directory
(``chains/SCHEDULE/KEY/STAMP.snar``): a daily is made only when both the chain's full and its
snapshot are there; otherwise the run makes a new full.

Reading a chain back needs no extraction: every level archive holds, for each directory, the
list of names it had at that time (GNU tar's dumpdir records, ``Y`` for a file in this
archive, ``N`` for one unchanged since the base, ``D`` for a directory). From them come the
files each run added, changed, renamed and deleted (:func:`changes`) and what a
whole-file-system restore will remove (:func:`planned_deletions`).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import AixsmitError
from ..state import atomic_write_json, state_dir
from .incremental import fs_key, legacy_key

Emit = Callable[[str, str], None]
STAMP = "%Y%m%d-%H%M%S"
_ARCHIVE = re.compile(r"(\d{8}-\d{6})\.L(\d)\.tar")


def when(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, STAMP)


@dataclass
class Chain:
    path: Path  # the chain's folder (for archives of an earlier version: the file system's folder)
    stamp: str  # the time of its full backup
    full: Path | None  # None: the full backup is missing
    dailies: list[tuple[str, Path]] = field(default_factory=list)  # (stamp, archive), oldest first

    def archives(self, until: dt.datetime | None = None) -> list[Path]:
        """The full and the last daily made at or before ``until``: what a restore reads."""
        picked = [p for s, p in self.dailies if until is None or when(s) <= until][-1:]
        return ([self.full] if self.full else []) + picked

    def runs(self) -> list[tuple[str, int, Path]]:
        """(stamp, level, archive) of each run, the full first."""
        return ([(self.stamp, 0, self.full)] if self.full else []) + [(s, 1, p) for s, p in self.dailies]


def fs_folder(dest: str | os.PathLike[str], mount_point: str) -> Path:
    return Path(dest) / fs_key(mount_point)


def snapshot(sid: str, mount_point: str, stamp: str) -> Path:
    return state_dir() / "chains" / sid / fs_key(mount_point) / f"{stamp}.snar"


# --- folders only root can change -------------------------------------------------------------
#
# A chain is read back as root and restored onto live file systems: whoever could put an
# archive in DEST/KEY/STAMP could make root restore a set-uid shell. So every folder from KEY
# down is opened relative to its parent's descriptor with O_NOFOLLOW and checked on that
# descriptor (fstat): a folder aixsmit made (0700) or root's, not a link, writable by nobody but
# its owner. DEST itself (the operator's) must be a folder other users cannot change either
# (schedule.check_dest): then no name checked here can be swapped after the check.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def private_folder(parent_fd: int, name: str, shown: str, create: bool = False) -> int | None:
    """A descriptor of the folder ``name`` in ``parent_fd`` (``shown``: its path, for messages),
    made 0700 first when ``create`` and missing; None when missing and not ``create``. Raises
    AixsmitError (one line) for a symbolic link, a non-folder, a folder not root's or writable
    by group or others."""
    made = False
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            made = True
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            link = stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode)
        except OSError:
            link = False
        what = "a symbolic link" if link else "not a folder" if exc.errno in (errno.ENOTDIR, errno.ELOOP) else exc.strerror
        raise AixsmitError(f"schedule: {shown} is {what}: a folder of backups must be one aixsmit made; refused "
                           "(remove it, and the next run makes its own).")
    try:
        st = os.fstat(fd)
        if made:
            os.fchmod(fd, 0o700)  # whatever the umask took away
        elif st.st_uid not in (0, os.geteuid()):
            raise AixsmitError(f"schedule: {shown} belongs to {_owner(st.st_uid)}, not root: its backups could be "
                               "anybody's; refused (remove it, or chown root and check what it holds).")
        elif st.st_mode & 0o022:
            raise AixsmitError(f"schedule: {shown} is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
                               f"(mode {stat.S_IMODE(st.st_mode):04o}): its backups could be anybody's; refused "
                               f"(chmod 700 {shown}, and check what it holds).")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _owner(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def open_folder(folder: Path, create: bool = False) -> int | None:
    """A descriptor of a file system's folder ``DEST/KEY``, checked as :func:`private_folder`
    (after DEST: schedule.check_dest). None when it does not exist and not ``create``."""
    from ..jobs.schedule import check_dest

    dest = check_dest(str(folder.parent))
    dfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return private_folder(dfd, folder.name, str(folder), create)
    finally:
        os.close(dfd)


def list_chains(folder: Path) -> list[Chain]:
    """The chains in ``folder`` (a file system's folder of a schedule), oldest first. The folder
    and each chain's folder are checked (:func:`private_folder`); an archive must be a file (not
    a link) of root's.

    Archives an earlier version left directly in ``folder`` are grouped as it did (a full and
    the dailies after it); a daily found before any full makes a chain without a full."""
    out: list[Chain] = []
    fd = open_folder(folder)
    if fd is None:
        return out
    loose: list[tuple[str, int, Path]] = []
    try:
        for name in sorted(os.listdir(fd)):
            p = folder / name
            m = _ARCHIVE.fullmatch(name)
            if m and _archive_file(fd, name, p):
                loose.append((m.group(1), int(m.group(2)), p))
            elif re.fullmatch(r"\d{8}-\d{6}", name):
                cfd = private_folder(fd, name, str(p))
                if cfd is None:
                    continue
                try:
                    c = Chain(p, name, None)
                    for a in sorted(os.listdir(cfd)):
                        m = _ARCHIVE.fullmatch(a)
                        if not m or not _archive_file(cfd, a, p / a):
                            continue
                        if m.group(2) == "0" and m.group(1) == name:
                            c.full = p / a
                        elif m.group(2) != "0":
                            c.dailies.append((m.group(1), p / a))
                finally:
                    os.close(cfd)
                out.append(c)
    finally:
        os.close(fd)
    legacy: list[Chain] = []
    for s, level, p in loose:
        if level == 0:
            legacy.append(Chain(folder, s, p))
        elif legacy:
            legacy[-1].dailies.append((s, p))
        else:
            legacy.append(Chain(folder, s, None, [(s, p)]))
    return sorted(legacy + out, key=lambda c: c.stamp)


def _archive_file(dir_fd: int, name: str, shown: Path) -> bool:
    """``name`` in ``dir_fd`` is an archive to read: a regular file (not a link) of root's,
    writable by nobody else; a link or another user's file there is refused (one line)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        why = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file" if not stat.S_ISREG(st.st_mode)
               else f"{_owner(st.st_uid)}'s" if st.st_uid not in (0, os.geteuid()) else "writable by others")
        raise AixsmitError(f"schedule: {shown} is {why}, not an archive aixsmit wrote; refused (remove it).")
    return True


def pick(folder: Path, mount_point: str, until: dt.datetime | None) -> Chain:
    """The chain that holds the state of ``mount_point`` at ``until`` (None: the latest), with
    its full backup; a one-line error naming what is missing otherwise."""
    chains = [c for c in list_chains(folder) if until is None or when(c.stamp) <= until]
    if not chains:
        old = folder.parent / legacy_key(mount_point)
        hint = (f"; {old} holds backups of an earlier version, named so that they may belong to another file "
                "system: read them with 'restore -T'") if old != folder and old.is_dir() else ""
        at = f" from {until:%Y-%m-%d %H:%M} or before" if until else ""
        raise AixsmitError(f"schedule: no backup of {mount_point}{at} in {folder}{hint}")
    c = chains[-1]
    if c.full is None:
        raise AixsmitError(f"schedule: the full backup (level 0) of {mount_point} of {when(c.stamp):%Y-%m-%d %H:%M} "
                           f"is not in {c.path} ({c.stamp}.L0.tar): its dailies alone would leave data out; nothing "
                           "was restored.")
    return c


def archive_level(path: str) -> int | None:
    """For a level backup (its first member a GNU dumpdir record): its level from a name such
    as ``X.L1.tar`` or -1 when the name does not say; None for any other file."""
    from . import archive

    try:
        with archive.open_image(str(path), "restore") as tf:
            first = next(archive.read_members(tf, archive.Damage()), None)
    except (AixsmitError, OSError, tarfile.TarError):
        return None
    if first is None or "GNU.dumpdir" not in first.pax_headers:
        return None
    m = re.search(r"\.L(\d)\b", os.path.basename(path))
    return int(m.group(1)) if m else -1


# --- reading the dumpdir records ------------------------------------------------------------

@dataclass(frozen=True)
class Meta:
    kind: str  # f file, d directory, l symlink, h hard link, o other
    size: int
    mtime: int
    link: str = ""


def _kind(m: tarfile.TarInfo) -> str:
    return "d" if m.isdir() else "l" if m.issym() else "h" if m.islnk() else "f" if m.isreg() else "o"


def dumpdirs(path: Path) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Meta]]:
    """One pass over a level archive's headers (no data is extracted): each directory's
    dumpdir entries ``(flag, name)``, and every member's :class:`Meta`."""
    dirs: dict[str, list[tuple[str, str]]] = {}
    metas: dict[str, Meta] = {}
    from . import archive

    damage = archive.Damage()
    try:
        with archive.open_image(str(path), "schedule") as tf:
            for m in archive.read_members(tf, damage):
                n = archive._norm(m.name)
                metas[n] = Meta(_kind(m), m.size, int(m.mtime), m.linkname)
                raw = m.pax_headers.get("GNU.dumpdir")
                if raw is not None:
                    dirs[n] = [(e[0], e[1:]) for e in raw.split("\0") if e]
    except (OSError, tarfile.TarError) as exc:
        raise AixsmitError(f"schedule: {path} cannot be read as a level backup: {exc}")
    if damage:
        raise AixsmitError(f"schedule: {path} cannot be read as a level backup: it is damaged: {damage[0]}")
    return dirs, metas


def tree(path: Path, base: dict[str, Meta] | None) -> dict[str, Meta | None]:
    """Every name the file system held when ``path`` was made: from the archive for what it
    holds, from ``base`` (the tree of the full) for what was unchanged since; None where
    neither says (a level 1 read without its full)."""
    dirs, metas = dumpdirs(path)
    out: dict[str, Meta | None] = {".": metas.get(".", Meta("d", 0, 0))}
    for d, entries in dirs.items():
        for flag, name in entries:
            if flag not in "YND":
                continue  # R/T/X: a renamed directory, recorded again under its new name
            n = f"{d}/{name}" if d != "." else f"./{name}"
            if flag == "D":
                out[n] = metas.get(n, Meta("d", 0, 0))
            elif flag == "Y":
                out[n] = metas.get(n)
            else:
                out[n] = (base or {}).get(n)
    return out


@dataclass
class RunChanges:
    stamp: str
    level: int
    archive: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)


def changes(chain: Chain) -> list[RunChanges]:
    """What each run of ``chain`` added, changed, renamed and deleted since the run before it
    (for the full: everything it holds is added). A file deleted and another added in one run
    with the same kind, size and time are shown as a rename."""
    if chain.full is None:
        raise AixsmitError(f"schedule: the full backup (level 0) of the chain in {chain.path} is missing; its changes "
                           "cannot be told.")
    out: list[RunChanges] = []
    full = tree(chain.full, None)
    prev: dict[str, Meta | None] = {}
    for stamp, level, path in chain.runs():
        now = full if level == 0 else tree(path, full)  # type: ignore[arg-type]
        rc = RunChanges(stamp, level, str(path))
        added = sorted(n for n in now if n not in prev and n != ".")
        deleted = sorted(n for n in prev if n not in now)
        rc.changed = sorted(n for n in now if n in prev and n != "." and now[n] != prev[n]
                            and (now[n] is None or now[n].kind != "d"))
        gone = {}
        for n in deleted:
            m = prev[n]
            if m is not None and m.kind != "d":
                gone.setdefault((m.kind, m.size, m.mtime), []).append(n)
        for n in list(added):
            m = now[n]
            olds = gone.get((m.kind, m.size, m.mtime)) if m is not None and m.kind != "d" else None
            if olds and len(olds) == 1:
                rc.renamed.append((olds.pop(), n))
                added.remove(n)
        moved = {a for a, _ in rc.renamed}
        rc.added, rc.deleted = added, [n for n in deleted if n not in moved]
        out.append(rc)
        prev = now
    return out


# --- whole-file-system restore --------------------------------------------------------------

def planned_deletions(archive: Path, target: str) -> list[str]:
    """What extracting ``archive`` with its deletions would remove from ``target``: in each
    directory the archive lists, the names it did not list (never following a symlink)."""
    dirs, _ = dumpdirs(archive)
    out: list[str] = []
    for d, entries in sorted(dirs.items()):
        host = os.path.join(target, d)
        try:
            if not stat.S_ISDIR(os.lstat(host).st_mode):
                continue
            present = os.listdir(host)
        except OSError:
            continue
        listed = {name for flag, name in entries}
        out += [f"{d}/{n}" if d != "." else f"./{n}" for n in sorted(set(present) - listed)]
    return out


def _restores() -> Path:
    return state_dir() / "restores.json"


def _key(target: str) -> tuple[str, list[int]]:
    st = os.lstat(target)
    return os.path.realpath(target), [st.st_dev, st.st_ino]


def check_target(target: str, archive: Path, first: bool) -> None:
    """A whole-file-system restore goes only into an empty directory, a mount point the
    operator names, or (for a level after the full) the directory a previous one restored."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise AixsmitError(f"restore: {target} does not exist; make an empty directory or mount the new file system "
                           "there first.", code=2)
    if not stat.S_ISDIR(st.st_mode):
        raise AixsmitError(f"restore: {target} is not a directory (a symbolic link is not followed).", code=2)
    if os.path.ismount(target):
        _not_the_system(target)
        return
    if not os.listdir(target):
        return
    if not first:
        return
    try:
        done = json.loads(_restores().read_text())
    except (OSError, ValueError):
        done = {}
    path, ident = _key(target)
    if done.get(path, {}).get("ident") == ident:
        return
    raise AixsmitError(f"restore: {target} is neither empty nor a mount point: a whole file system restore of "
                       f"{archive.name} would delete what it holds that the backup does not. Restore into an "
                       "empty directory, or name the mount point of the file system to restore.", code=2)


def _not_the_system(target: str) -> None:
    """A mount point named as the target must hold user data: restoring /home's backup onto
    / or /usr as a whole file system would delete the operating system's files."""
    from ..fs.classify import SYSTEM
    from ..fs.table import System

    real = os.path.realpath(target)
    for e in System(root="/").table():
        if e.mount_point == real and (e.cls == SYSTEM or real == "/"):
            raise AixsmitError(f"restore: {target} is the system file system {e.mount_point}: a whole file system "
                               "restore there would delete what the backup does not hold. Restore into an empty "
                               "directory, or the mount point of the user file system the backup is of.", code=2)


def restore_whole(archive: Path, target: str, emit: Emit, first: bool = True) -> list[str]:
    """AIX ``restore -r``: extract a level archive into ``target`` as a whole file system,
    removing what the backup says was deleted since its base. Says first what it removes."""
    from . import archive as images

    check_target(target, archive, first)
    gone = planned_deletions(archive, target)
    for n in gone:
        emit(f"restore: removing {n}: it is not in the backup {archive.name}", "stdout")
    images.restore(str(archive), target, [], False, emit, program="restore", apply_deletions=True)
    try:
        done = json.loads(_restores().read_text())
    except (OSError, ValueError):
        done = {}
    path, ident = _key(target)
    done[path] = {"ident": ident, "last": str(archive)}
    atomic_write_json(_restores(), done)
    return gone


def removals(picked: list[Path], target: str) -> list[str]:
    """What is in ``target`` now and will not be after restoring ``picked`` (a full, then a
    daily): in each directory the restored tree will have, the names it will not have. Read
    from the archives' dumpdir records, before anything is written."""
    final: dict[str, Meta | None] | None = None
    for p in picked:
        final = tree(p, final)  # type: ignore[arg-type]
    out: list[str] = []
    for d, meta in sorted((final or {}).items()):
        if meta is None or meta.kind != "d":
            continue
        host = os.path.join(target, d)
        try:
            if not stat.S_ISDIR(os.lstat(host).st_mode):
                continue
            present = sorted(os.listdir(host))
        except OSError:
            continue
        out += [n for n in (f"{d}/{x}" if d != "." else f"./{x}" for x in present) if n not in final]
    return out


def restore_chain(folder: Path, mount_point: str, until: dt.datetime | None, target: str, emit: Emit,
                  dry_run: bool = False) -> list[str]:
    """Restore ``mount_point`` as it was at ``until`` (None: the last backup) into ``target``:
    the chain's full, then its last daily before ``until``, deletions applied. First says
    which archives and what now in ``target`` will be removed; ``dry_run`` stops there."""
    chain = pick(folder, mount_point, until)
    picked = chain.archives(until)
    emit(f"restore: {mount_point} as of {when((picked[-1].name.split('.')[0])):%Y-%m-%d %H:%M}: "
         + ", then ".join(p.name for p in picked), "stdout")
    if os.path.lexists(target):
        check_target(target, picked[0], True)
        gone = removals(picked, target)
        for n in gone:
            emit(f"restore: will remove {n} from {target}: it is not in the backup", "stdout")
        if not gone:
            emit(f"restore: nothing now in {target} will be removed.", "stdout")
    if dry_run:
        return [str(p) for p in picked]
    if not os.path.lexists(target):
        os.makedirs(target, mode=0o700)
    for i, p in enumerate(picked):
        emit(f"Restoring {p.name} into {target}.", "stdout")
        restore_whole(p, target, emit, first=i == 0)
    return [str(p) for p in picked]


def prune(folder: Path, sid: str, mount_point: str, keep: int, emit: Emit) -> None:
    """Keep the last ``keep`` chains that have their full; older ones go, with their snapshots."""
    chains = list_chains(folder)
    whole = [c for c in chains if c.full is not None]
    if keep <= 0 or len(whole) <= keep:
        return
    cut = whole[-keep].stamp
    for c in chains:
        if c.stamp >= cut:
            continue
        if c.path == folder:  # an earlier version's loose archives
            for _, _, p in c.runs():
                p.unlink(missing_ok=True)
        else:
            shutil.rmtree(c.path)
        snapshot(sid, mount_point, c.stamp).unlink(missing_ok=True)
        emit(f"schedule: removed the chain of {when(c.stamp):%Y-%m-%d %H:%M} in {c.path} (older than the last {keep} "
             "weeks)", "stdout")
