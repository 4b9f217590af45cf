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
import functools
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
    dumpdir entries ``(flag, name)``, and every member's :class:`Meta`. A restore reads them
    several times: kept while the file is the same (inode, size, time)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AixsmitError(f"schedule: {path} cannot be read as a level backup: {exc.strerror}")
    return _dumpdirs(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _dumpdirs(path: str, *identity: int) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Meta]]:
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

Confirm = Callable[[list[str]], bool]


@dataclass
class Plan:
    """What a whole-file-system restore of a sequence of level archives (a full, then levels)
    does to ``target``, read from the archives' dumpdir records before anything is written.

    Only a name some archive of the sequence held, and the last one no longer holds, is ever
    removed (``gone``); of those, ``remove`` are in ``target`` now, before the restore (on a
    mount point: named, and confirmed). A name no archive held (``kept``: made after the last
    backup, or never backed up) stays, whatever the backups say about its folder."""

    final: dict[str, Meta | None]
    held: dict[str, Meta | None]  # every name some archive held, as the last one holding it had it
    gone: list[str]  # held, not in the final state: deepest first
    remove: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _is_full(path: Path) -> bool:
    """False for a level that surely builds on another: a dumpdir entry refers to a file
    unchanged since its base ('N'). (A level 1 in which everything changed reads as a full.)"""
    dirs, _ = dumpdirs(path)
    return not any(flag == "N" for entries in dirs.values() for flag, _ in entries)


def plan(sequence: list[Path], target: str) -> Plan:
    """The :class:`Plan` of restoring ``sequence`` (each level read against the one before)
    into ``target`` as it is now."""
    held: dict[str, Meta | None] = {}
    final: dict[str, Meta | None] | None = None
    for p in sequence:
        # A folder the archive records as renamed takes what it held along (restore_sequence
        # renames it before extracting): those names are held under the new name too.
        for src, dst in _rename_pairs(p):
            held.update({dst + n[len(src):]: m for n, m in list(held.items()) if n == src or n.startswith(src + "/")})
        final = tree(p, final)
        held.update({n: m for n, m in final.items() if m is not None or n not in held})
    final = final or {}
    gone = sorted((n for n in held if n not in final and n != "."), key=lambda n: (-n.count("/"), n))
    out = Plan(final, held, gone)
    for n in sorted(gone):
        if os.path.lexists(os.path.join(target, n[2:])):
            out.remove.append(n)
    for d, meta in sorted(final.items()):
        if meta is None or meta.kind != "d":
            continue
        host = os.path.join(target, d[2:]) if d != "." else target
        try:
            if not stat.S_ISDIR(os.lstat(host).st_mode):
                continue
            present = sorted(os.listdir(host))
        except OSError:
            continue
        out.kept += [n for n in (f"{d}/{x}" if d != "." else f"./{x}" for x in present) if n not in held]
    return out


def _parent(tfd: int, name: str) -> tuple[int, str]:
    """A descriptor of the folder holding ``name`` (``./a/b``) below ``tfd``, each folder on the
    way opened O_NOFOLLOW (a link there is never followed: OSError), and the last part."""
    parts = [x for x in name.split("/") if x not in ("", ".")]
    if not parts or ".." in parts:
        raise FileNotFoundError(name)
    fd = os.dup(tfd)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _remove(tfd: int, name: str) -> bool:
    """Remove ``name`` below ``tfd`` (a folder only when empty); False when a folder was kept
    because it still holds something. Nothing is followed; a name not there is no error."""
    try:
        pfd, base = _parent(tfd, name)
    except OSError:
        return True
    try:
        st = os.lstat(base, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise AixsmitError(f"restore: cannot remove {name}: {exc.strerror}")
    finally:
        os.close(pfd)
    return True


def _rename(tfd: int, src: str, dst: str) -> None:
    """Move the folder ``src`` to ``dst`` (both ``./path`` below ``tfd``), as GNU tar does for a
    folder a level backup recorded as renamed: only when ``src`` is there and ``dst`` is not."""
    try:
        sfd, sbase = _parent(tfd, src)
    except OSError:
        return
    try:
        dfd, dbase = _parent(tfd, dst)
    except OSError:
        os.close(sfd)
        return
    try:
        if not stat.S_ISDIR(os.lstat(sbase, dir_fd=sfd).st_mode) or os.path.lexists(f"/proc/self/fd/{dfd}/{dbase}"):
            return
        os.rename(sbase, dbase, src_dir_fd=sfd, dst_dir_fd=dfd)
    except OSError:
        pass
    finally:
        os.close(sfd)
        os.close(dfd)


def _rename_pairs(archive: Path) -> list[tuple[str, str]]:
    """(old, new) ./names of the folders ``archive`` records as renamed (dumpdir R, then T)."""
    dirs, _ = dumpdirs(archive)
    out = []
    for entries in dirs.values():
        for (f1, src), (f2, dst) in zip(entries, entries[1:]):
            if f1 == "R" and f2 == "T" and src and dst:
                out.append((_dot(src), _dot(dst)))
    return out


def _dot(name: str) -> str:
    name = name.rstrip("/")
    return name if name.startswith("./") or name == "." else f"./{name.lstrip('/')}"


def _renames(tfd: int, archive: Path) -> None:
    """The folder renames ``archive`` records (dumpdir ``R``/``T``, ``X`` for a temporary
    folder), in its order: what ``tar --listed-incremental`` does before extracting."""
    dirs, _ = dumpdirs(archive)
    for d, entries in dirs.items():
        temp = ""
        i = 0
        while i < len(entries):
            flag, name = entries[i]
            if flag == "X":
                temp = f"{name.rstrip('/')}/aixsmit.{os.urandom(4).hex()}"
                try:
                    pfd, base = _parent(tfd, temp)
                    try:
                        os.mkdir(base, 0o700, dir_fd=pfd)
                    finally:
                        os.close(pfd)
                except OSError:
                    temp = ""
            elif flag == "R" and i + 1 < len(entries) and entries[i + 1][0] == "T":
                src, dst = name or temp, entries[i + 1][1] or temp
                if src and dst:
                    _rename(tfd, src, dst)
                i += 1
            i += 1


def _clear_for(tfd: int, archive: Path, held: dict[str, Meta | None], emit: Emit) -> None:
    """Before ``archive`` is extracted: where it holds a folder and the target a file (or the
    other way round) that an earlier archive of the sequence held, that file (or folder, with
    what the archives held in it) goes; whatever no archive held stays, and the restore of the
    archive refuses it (check_target) before writing anything."""
    mine = tree(archive, None)
    for n, meta in sorted(mine.items()):
        if n == "." or meta is None:
            continue
        try:
            pfd, base = _parent(tfd, n)
        except OSError:
            continue
        try:
            st = os.lstat(base, dir_fd=pfd)
        except OSError:
            continue
        finally:
            os.close(pfd)
        was = held.get(n)
        if was is None:
            continue
        if meta.kind == "d" and not stat.S_ISDIR(st.st_mode) and was.kind != "d":
            emit(f"restore: removing {n}: the backup holds a folder there", "stdout")
            _remove(tfd, n)
        elif meta.kind != "d" and stat.S_ISDIR(st.st_mode) and was.kind == "d":
            below = sorted((x for x in held if x.startswith(n + "/")), key=lambda x: (-x.count("/"), x))
            for x in below:
                _remove(tfd, x)
            if _remove(tfd, n):
                emit(f"restore: removing {n}: the backup holds a file there", "stdout")


def restore_sequence(sequence: list[Path], extract: list[Path], target: str, emit: Emit,
                     confirm: Confirm | None = None, dry_run: bool = False) -> Plan:
    """Restore a whole file system from ``sequence`` (a full, then levels; ``extract``: the ones
    of them to extract now, the others were before): each archive extracted as GNU tar does
    (folder renames it records applied first), then the names the archives held and the last
    one recorded as deleted removed. Before anything is written it says what it removes from
    ``target`` and what it keeps; on a mount point holding something it removes, ``confirm``
    (given the names) must say yes. ``dry_run``: only that. AixsmitError, one line."""
    from . import archive as images

    found = plan(sequence, target)
    for n in found.remove:
        emit(f"restore: will remove {n} from {target}: a backup held it and {sequence[-1].name} records it as "
             "deleted", "stdout")
    if found.kept:
        emit(f"restore: keeps {len(found.kept)} name(s) in {target} that no backup of the chain held: "
             f"{' '.join(found.kept[:5])}{' …' if len(found.kept) > 5 else ''}", "stdout")
    if not found.remove:
        emit(f"restore: nothing now in {target} will be removed.", "stdout")
    if dry_run:
        return found
    if found.remove and os.path.ismount(target) and not (confirm and confirm(found.remove)):
        raise AixsmitError(f"restore: {len(found.remove)} name(s) now in the mounted file system {target} would be "
                           "removed (named above); give --yes to remove them, or --dry-run to only see them. Nothing "
                           "was restored.")
    tfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        done = sequence[:len(sequence) - len(extract)]
        seen: dict[str, Meta | None] = plan(done, target).held if done else {}
        for p in extract:
            emit(f"Restoring {p.name} into {target}.", "stdout")
            _renames(tfd, p)
            _clear_for(tfd, p, seen, emit)
            if p is extract[-1]:
                # Before the last extraction, as GNU tar purges a folder before filling it: the
                # folders' times it sets at its end stay as the backup had them.
                for n in found.gone:
                    if n in found.remove:
                        emit(f"restore: removing {n}: {sequence[-1].name} records it as deleted", "stdout")
                    if not _remove(tfd, n):
                        emit(f"restore: kept the folder {n}: it holds what no backup held", "stdout")
            images.restore(str(p), target, [], False, emit, program="restore")
            seen.update({n: m for n, m in tree(p, None).items() if m is not None})
    finally:
        os.close(tfd)
    _record(target, sequence)
    return found


def _record(target: str, sequence: list[Path]) -> None:
    try:
        done = json.loads(_restores().read_text())
    except (OSError, ValueError):
        done = {}
    path, ident = _key(target)
    done[path] = {"ident": ident, "last": str(sequence[-1]), "archives": [str(p) for p in sequence]}
    atomic_write_json(_restores(), done)


def _recorded(target: str) -> list[Path]:
    """The archives restored into ``target`` before, in order (restore -r, schedule restore)."""
    try:
        done = json.loads(_restores().read_text())
        path, ident = _key(target)
        rec = done.get(path, {})
        return [Path(p) for p in rec.get("archives", [])] if rec.get("ident") == ident else []
    except (OSError, ValueError, AttributeError, TypeError):
        return []


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


def restore_whole(archive: Path, target: str, emit: Emit, first: bool = True,
                  confirm: Confirm | None = None) -> list[str]:
    """AIX ``restore -r``: extract a level archive into ``target`` as a whole file system. What
    it removes is what an archive restored there before (recorded) held and this one records
    as deleted (:func:`restore_sequence`); the first archive restored there removes nothing. Returns the names removed from what ``target`` held."""
    check_target(target, archive, first)
    before = _recorded(target)
    if str(archive) in map(str, before):  # restored again: from there on
        before = before[:list(map(str, before)).index(str(archive))]
    for p in [p for p in before if not p.is_file()]:
        emit(f"restore: {p}, restored into {target} before, cannot be read now: what only it held is not removed.",
             "stdout")
        before.remove(p)
    sequence = before + [archive]
    if not before and not _is_full(archive):
        emit(f"restore: no full backup was restored into {target} before {archive.name}: nothing there is removed "
             "(restore the level 0 first, then each level).", "stdout")
    return restore_sequence(sequence, [archive], target, emit, confirm).remove


def restore_chain(folder: Path, mount_point: str, until: dt.datetime | None, target: str, emit: Emit,
                  dry_run: bool = False, confirm: Confirm | None = None) -> list[str]:
    """Restore ``mount_point`` as it was at ``until`` (None: the last backup) into ``target``:
    the chain's full, then its last daily before ``until`` (:func:`restore_sequence`). First
    says which archives, what now in ``target`` will be removed and what is kept; ``dry_run``
    stops there."""
    chain = pick(folder, mount_point, until)
    picked = chain.archives(until)
    emit(f"restore: {mount_point} as of {when((picked[-1].name.split('.')[0])):%Y-%m-%d %H:%M}: "
         + ", then ".join(p.name for p in picked), "stdout")
    if os.path.lexists(target):
        check_target(target, picked[0], True)
        if dry_run:
            restore_sequence(picked, picked, target, emit, dry_run=True)
    if dry_run:
        return [str(p) for p in picked]
    if not os.path.lexists(target):
        os.makedirs(target, mode=0o700)
    restore_sequence(picked, picked, target, emit, confirm)
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
