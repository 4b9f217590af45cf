"""Unmount user file systems safely, and mount them again — even after a crash.

* :func:`plan_unmount` works out what must go, deepest first (nested mounts before their
  parent, over-mounts top-most first), and refuses system and virtual file systems.
* :func:`unmount` names the holders of a busy file system before touching anything, then
  unmounts; a group is all-or-nothing: when one step fails, what this call already unmounted
  is mounted again.
* Every unmount is written to the :class:`Ledger` *before* ``umount`` runs, so a crash at any
  moment leaves a record from which :func:`mount_again` restores the file systems, no fstab
  entry needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import AixsmitError
from ..state import atomic_write_json, mount_lock, state_dir
from .classify import SYSTEM, USER, VIRTUAL
from .holders import LETTER, Holder
from .mounts import Mount
from .table import Entry, System, top

LEDGER_NAME = "unmounted.json"


@dataclass(frozen=True)
class LedgerEntry:
    mount_point: str  # as the operator named it, relative to root
    path: str  # absolute host path
    root: str
    device: str
    vfs: str
    options: tuple[str, ...]
    host: str = "linux"
    bind_source: str = ""  # for a bind mount: the host path it was bound from
    backing_file: str = ""  # for a loop device: its file, to attach again if the loop is gone
    uuid: str = ""
    dev: str = ""
    unmounted_at: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["options"] = list(self.options)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "LedgerEntry":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["options"] = tuple(known.get("options", ()))
        return cls(**known)


class Ledger:
    """What aixsmit unmounted and has not mounted again, in the state directory."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.dir = Path(directory) if directory else state_dir()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.dir / LEDGER_NAME

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / (LEDGER_NAME + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> list[LedgerEntry]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise AixsmitError(f"{self.path}: the unmount ledger cannot be read: {exc}")
        return [LedgerEntry.from_json(d) for d in data.get("entries", [])]

    def entries(self) -> list[LedgerEntry]:
        with self._locked():
            return self._read()

    def add(self, entry: LedgerEntry) -> None:
        with self._locked():
            entries = [e for e in self._read() if e.path != entry.path]
            entries.append(entry)
            atomic_write_json(self.path, {"version": 1, "entries": [e.to_json() for e in entries]})

    def remove(self, path: str) -> None:
        with self._locked():
            entries = self._read()
            kept = [e for e in entries if e.path != path]
            if len(kept) != len(entries):
                atomic_write_json(self.path, {"version": 1, "entries": [e.to_json() for e in kept]})

    def under(self, root: str) -> list[LedgerEntry]:
        root = root.rstrip("/") or "/"
        return [e for e in self.entries() if root == "/" or e.path == root or e.path.startswith(root + "/")]


# --- planning ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    targets: tuple[str, ...]
    steps: tuple[Entry, ...]  # in the order they will be unmounted

    @property
    def empty(self) -> bool:
        return not self.steps


def _depth(mp: str) -> int:
    return 0 if mp == "/" else mp.count("/")


def _below(mp: str, parent: str) -> bool:
    return parent == "/" or mp.startswith(parent.rstrip("/") + "/")


def plan_unmount(system: System, targets: list[str], all_user: bool = False,
                 table: list[Entry] | None = None) -> Plan:
    table = table if table is not None else system.table()
    names: list[str] = []
    if all_user:
        names += [e.mount_point for e in top(table, USER)]
    for t in targets:
        if not t.startswith("/"):
            raise AixsmitError(f"umount: {t}: a mount point must be an absolute path such as /home")
        t = os.path.normpath(t)
        if t not in names:
            names.append(t)
    chosen: dict[int, tuple[int, Entry]] = {}
    for t in names:
        here = [(i, e) for i, e in enumerate(table) if e.mount_point == t]
        if not here:
            raise AixsmitError(f"umount: {t}: 0506-347 Cannot find anything to unmount.")
        shown = here[-1][1]  # the visible one at that path
        if shown.cls == SYSTEM:
            raise AixsmitError(
                f"umount: {t} holds system data ({shown.mount.device}); aixsmit does not unmount system file systems."
            )
        if shown.cls == VIRTUAL:
            raise AixsmitError(
                f"umount: {t} is a virtual file system ({shown.mount.vfs}); it holds no data to protect and is not unmounted."
            )
        for i, e in enumerate(table):
            if e.mount_point == t or _below(e.mount_point, t):
                if e.cls == SYSTEM and e.mount_point != t:
                    raise AixsmitError(
                        f"umount: {t}: the system file system {e.mount_point} is mounted below it; unmount refused."
                    )
                chosen[i] = (i, e)
    # Deepest first; at one path the top-most (listed last) first.
    order = sorted(chosen.values(), key=lambda ie: (-_depth(ie[1].mount_point), -ie[0]))
    return Plan(targets=tuple(names), steps=tuple(e for _, e in order))


# --- holders --------------------------------------------------------------------------------

def holder_lines(holders: list[Holder], system: System | None = None) -> list[str]:
    lines = []
    for h in holders:
        path = system.shown(h.path) if system is not None else h.path
        lines.append(f"  pid {h.pid:>7}  {h.user:<10} {h.command:<16} {h.how} ({LETTER[h.how]}): {path}")
    return lines


class BusyError(AixsmitError):
    def __init__(self, message: str, holders: list[Holder], system: System | None = None, details=None):
        super().__init__(message, details=(details or []) + holder_lines(holders, system))
        self.holders = holders


def _busy_message(entries: list[Entry], holders: list[Holder]) -> str:
    busy = [e for e in entries if any(h.path == e.mount.path or h.path.startswith(e.mount.path.rstrip("/") + "/") for h in holders)]
    e = (busy or entries)[0]
    pids = sorted({h.pid for h in holders})
    who = ", ".join(f"{h.command} (pid {h.pid}, {h.user})" for h in _first_per_pid(holders))
    return (
        f"umount: 0506-349 Cannot unmount {e.mount.device}: The requested resource is busy. "
        f"{e.mount_point} is held by {len(pids)} process{'es' if len(pids) != 1 else ''}: {who}."
    )


def _first_per_pid(holders: list[Holder]) -> list[Holder]:
    seen, out = set(), []
    for h in holders:
        if h.pid not in seen:
            seen.add(h.pid)
            out.append(h)
    return out


# --- unmount and mount ---------------------------------------------------------------------

@dataclass
class UnmountResult:
    unmounted: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _bind_source(m: Mount, all_mounts: list[Mount], leaving: set[str]) -> str:
    for o in all_mounts:
        if o is m or o.dev != m.dev or o.path in leaving:
            continue
        if any(o.path == p or o.path.startswith(p.rstrip("/") + "/") for p in leaving):
            continue
        root = o.fs_root.rstrip("/")
        if m.fs_root == o.fs_root or m.fs_root.startswith(root + "/"):
            return o.path.rstrip("/") + m.fs_root[len(root):] if m.fs_root != o.fs_root else o.path
    return ""


def _ledger_entry(system: System, e: Entry, all_mounts: list[Mount], leaving: set[str]) -> LedgerEntry:
    m = e.mount
    bind_source = ""
    if m.is_bind:
        bind_source = _bind_source(m, all_mounts, leaving)
        if not bind_source:
            raise AixsmitError(
                f"umount: {e.mount_point} is a bind mount of {m.fs_root} whose source is not mounted anywhere else; "
                "it could not be mounted again, so it is not unmounted."
            )
    facts = system.host.device_facts(m) if not bind_source else {"uuid": "", "backing_file": ""}
    return LedgerEntry(
        mount_point=e.mount_point,
        path=m.path,
        root=system.root,
        device=m.device,
        vfs=m.vfs,
        options=tuple(o for o in m.options if o),
        host=system.host.name,
        bind_source=bind_source,
        backing_file=facts.get("backing_file", ""),
        uuid=facts.get("uuid", ""),
        dev=m.dev,
        unmounted_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def unmount(system: System, plan: Plan, ledger: Ledger, force: bool = False,
            check_holders: bool = True, progress=None) -> UnmountResult:
    """Unmount ``plan`` all-or-nothing. Raises :class:`BusyError` or :class:`AixsmitError`."""
    with mount_lock("umount"):
        return _unmount(system, plan, ledger, force, check_holders, progress)


def _unmount(system: System, plan: Plan, ledger: Ledger, force: bool, check_holders: bool, progress) -> UnmountResult:
    result = UnmountResult()
    if plan.empty:
        return result
    all_mounts = system.all_mounts()
    steps = list(plan.steps)
    if check_holders and not force:
        holders = system.host.holders([e.mount for e in steps], all_mounts)
        if holders:
            raise BusyError(_busy_message(steps, holders) + " Nothing was unmounted.", holders, system)
    leaving = {e.mount.path for e in steps}
    records = [_ledger_entry(system, e, all_mounts, leaving) for e in steps]
    for e, rec in zip(steps, records):
        ledger.add(rec)  # before umount: a crash from here on leaves a record to recover from
        res = system.host.umount(e.mount, force=force)
        if res.rc == 0:
            result.unmounted.append(e)
            if progress:
                progress(f"Unmounted {e.mount_point} ({e.mount.device}).")
            continue
        ledger.remove(rec.path)
        if system.host.is_busy(res):
            holders = system.host.holders([e.mount], system.all_mounts())
            err: AixsmitError = BusyError(_busy_message([e], holders) if holders else
                                          f"umount: 0506-349 Cannot unmount {e.mount.device}: The requested resource is busy.",
                                          holders, system)
        else:
            err = AixsmitError(f"umount: 0506-349 Cannot unmount {e.mount.device}: {_clean(res.message)}")
        _roll_back(system, ledger, result.unmounted, records, err)
        raise err
    return result


def _clean(message: str) -> str:
    return message.removeprefix("umount: ")


def _roll_back(system: System, ledger: Ledger, done: list[Entry], records: list[LedgerEntry],
               err: AixsmitError) -> None:
    if not done:
        err.args = (str(err) + " Nothing was unmounted.",)
        return
    by_path = {r.path: r for r in records}
    again, failed = [], []
    for e in reversed(done):  # parents were unmounted last: mount them first
        rec = by_path[e.mount.path]
        res = system.host.mount(rec)
        if res.rc == 0:
            ledger.remove(rec.path)
            again.append(e.mount_point)
        else:
            failed.append(f"{e.mount_point} ({_clean(res.message)})")
    note = f" The {len(again)} file system(s) unmounted in this call were mounted again: {', '.join(again)}." if again else ""
    if failed:
        note += f" Could NOT mount again: {', '.join(failed)}; run 'aixsmit cmd mount --ledger'."
    err.args = (str(err) + note,)


def _fstab_entry(system: System, mount_point: str) -> LedgerEntry | None:
    from . import fstab

    e = fstab.by_mount_point(system.root).get(mount_point)
    if e is None:
        return None
    opts = tuple(o for o in e.options.split(",")
                 if o not in ("defaults", "noauto", "auto", "nofail", "user", "users") and not o.startswith("x-"))
    uuid = e.device[5:] if e.device.startswith("UUID=") else ""
    return LedgerEntry(mount_point=mount_point, path=system.abs_path(mount_point), root=system.root,
                       device=e.device, vfs=e.vfs, options=opts, host=system.host.name, uuid=uuid)


def mount_again(system: System, ledger: Ledger, mount_points: list[str] | None = None,
                from_ledger: bool = False, progress=None) -> list[str]:
    """Mount ledger entries (``from_ledger``) and/or named mount points; parents first.

    A named mount point not in the ledger is looked up in ``ROOT/etc/fstab``. Returns the
    mount points mounted; raises one error naming every one that failed (the others still run).
    """
    with mount_lock("mount"):
        return _mount_again(system, ledger, mount_points, from_ledger, progress)


def _mount_again(system: System, ledger: Ledger, mount_points: list[str] | None, from_ledger: bool,
                 progress) -> list[str]:
    wanted: list[LedgerEntry] = []
    errors: list[str] = []
    entries = ledger.under(system.root)
    if from_ledger:
        wanted += entries
    for mp in mount_points or []:
        path = system.abs_path(mp)
        hit = [e for e in entries if e.path == path]
        if hit:
            if hit[0] not in wanted:
                wanted.append(hit[0])
            continue
        fs = _fstab_entry(system, os.path.normpath(mp)) if system.host.name == "linux" else None
        if fs is None and system.host.name == "aix":
            fs = LedgerEntry(mount_point=mp, path=path, root=system.root, device="", vfs="", options=(), host="aix")
        if fs is None:
            errors.append(f"mount: 0506-334 {mp} is not a known file system.")
            continue
        wanted.append(fs)
    current = {m.path: m for m in system.all_mounts()}
    done: list[str] = []
    for e in sorted(wanted, key=lambda e: _depth(e.path)):
        m = current.get(e.path)
        if m is not None:
            if (e.dev and m.dev == e.dev) or m.device == e.device:
                ledger.remove(e.path)
                if progress:
                    progress(f"{e.mount_point} is already mounted.")
            else:
                errors.append(f"mount: 0506-333 {e.mount_point} is already mounted (by {m.device}).")
            continue
        if system.host.name == "aix" and not e.device:
            from ..host.common import run

            res = run(["mount", e.path])
        else:
            res = system.host.mount(e)
        if res.rc == 0:
            ledger.remove(e.path)
            done.append(e.mount_point)
            if progress:
                progress(f"Mounted {e.mount_point} ({e.device if not e.bind_source else e.bind_source}).")
        else:
            errors.append(f"mount: 0506-324 Cannot mount {e.device} on {e.mount_point}: {_clean(res.message).removeprefix('mount: ')}")
    if errors:
        raise AixsmitError(errors[0] if len(errors) == 1 else f"{len(errors)} file systems could not be mounted",
                           details=errors if len(errors) > 1 else [])
    return done
