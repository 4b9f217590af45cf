"""Unmount user file systems safely, and mount them again exactly as they were — even after a crash.

* :func:`plan_unmount` works out what must go and in which order, and everything needed to
  mount each one again (its ledger record). The dry run prints this plan and the real run
  carries it out: they are one computation, so they never disagree. A named mount point brings
  along what is mounted below it or over it (stacked mounts) and what depends on it (a
  loop-mounted file system whose backing file lies on it, an overlay whose layers do); each
  goes before what it needs. System and virtual file systems are refused.
* :func:`unmount` names the holders of a busy file system before touching anything, then for
  each step writes its record, durably, *before* ``umount`` runs: a record that cannot be
  written stops the run there. A group is all-or-nothing: when one step fails, what this call
  already unmounted is mounted again, from this call's own records.
* :func:`mount_again` mounts records again in the reverse order of their unmounts (so a stack
  comes back in the same order), recognising a file system already mounted by its identity
  (UUID, or loop backing file and offset), and goes on past a failure, reporting each.

Every step holds :func:`aixsmit.state.mount_lock`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..errors import AixsmitError
from ..state import mount_lock
from .classify import SYSTEM, USER, VIRTUAL
from .holders import LETTER, Holder
from .ledger import Ledger, LedgerError, Record, checkpoint, new_run_id, stamp
from .mounts import Mount, visible
from .table import VOLATILE_VFS, Entry, System, top, user_mount_points

LedgerEntry = Record  # the name earlier code used

# File systems that always carry a UUID: their records must hold it.
UUID_VFS = frozenset("ext2 ext3 ext4 xfs btrfs jfs f2fs reiserfs".split())


# --- planning ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    targets: tuple[str, ...]
    steps: tuple[Entry, ...]  # in the order they will be unmounted
    records: tuple[Record, ...] = ()  # one per step: how to mount it again
    reasons: tuple[str, ...] = ()  # one per step: "" or why it is unmounted too

    @property
    def empty(self) -> bool:
        return not self.steps


def _depth(mp: str) -> int:
    return 0 if mp == "/" else mp.count("/")


def _under(path: str, mp: str) -> bool:
    return path == mp or path.startswith(mp.rstrip("/") + "/")


def _unescape_opt(value: str) -> str:
    from .mounts import unescape

    return unescape(value)


def overlay_layers(m: Mount) -> list[str]:
    """The directories an overlay mount is made of (lowerdir, upperdir, workdir)."""
    if m.vfs != "overlay":
        return []
    out = []
    for o in m.super_options:
        key, _, value = o.partition("=")
        if key in ("lowerdir", "upperdir", "workdir", "datadir"):
            out += [_unescape_opt(v) for v in value.replace("::", ":").split(":") if v]
    return out


def _needs(system: System, m: Mount) -> list[str]:
    """Host paths ``m`` keeps open: a loop device's backing file, an overlay's layers."""
    if system.host.name != "linux":
        return []
    if m.device.startswith("/dev/loop"):
        from ..host.linux import loop_backing_file

        f = loop_backing_file(m.device)
        return [f] if f else []
    return overlay_layers(m)


def _fs_holding(path: str, table: list[Entry]) -> int | None:
    """Index of the visible mount that holds host path ``path`` (deepest, top of its stack)."""
    best = None
    for i, e in enumerate(table):
        if _under(path, e.mount.path) and (best is None or len(e.mount.path) >= len(table[best].mount.path)):
            best = i
    return best


def plan_unmount(system: System, targets: list[str], all_user: bool = False,
                 table: list[Entry] | None = None) -> Plan:
    """What unmounting ``targets`` (mount points as the operator names them; with ``all_user``
    every user file system too) takes, in order, each with its ledger record. Raises
    :class:`AixsmitError` (``0506-347`` nothing there; system, virtual and dependent system
    file systems refused)."""
    table = table if table is not None else system.table()
    names: list[str] = []
    if all_user:
        names += user_mount_points(table)
    for t in targets:
        if not t.startswith("/"):
            raise AixsmitError(f"umount: {visible(t)}: a mount point must be an absolute path such as /home")
        t = os.path.normpath(t)
        if t not in names:
            names.append(t)
    at, under = _index(table)
    chosen: dict[int, str] = {}
    for t in names:
        here = [(i, table[i]) for i in at.get(t, [])]
        if not here:
            raise AixsmitError(f"umount: {visible(t)}: 0506-347 Cannot find anything to unmount.")
        shown = here[-1][1]  # the visible one at that path
        if shown.cls == SYSTEM:
            raise AixsmitError(
                f"umount: {visible(t)} holds system data ({visible(shown.mount.device)}); aixsmit does not unmount system file systems."
            )
        if shown.cls == VIRTUAL and not any(e.cls == USER for _, e in here):
            raise AixsmitError(
                f"umount: {visible(t)} is a virtual file system ({visible(shown.mount.vfs)}); it holds no data to protect and is not unmounted."
            )
        _take(table, at, under, t, chosen, "")
    # What depends on a chosen file system goes too (it would keep it busy), until nothing new.
    # For each mount, the paths it keeps open and the mounts holding them (computed once).
    needs = {i: [(p, _fs_holding(p, table)) for p in _needs(system, e.mount)] for i, e in enumerate(table)}
    changed = True
    while changed:
        changed = False
        for i, e in enumerate(table):
            if i in chosen:
                continue
            for p, j in needs[i]:
                if j is not None and j in chosen:
                    if e.cls == SYSTEM:
                        raise AixsmitError(f"umount: {visible(table[j].mount_point)}: the system file system {visible(e.mount_point)} "
                                           f"depends on it ({visible(p)}); unmount refused.")
                    _take(table, at, under, e.mount_point, chosen, f"it uses {visible(system.shown(p))}, on {visible(table[j].mount_point)}")
                    changed = True
                    break
    order = _order(system, table, chosen, needs)
    leaving = {table[i].mount.path for i in order}
    records = tuple(_record(system, table, i, at, leaving) for i in order)
    return Plan(targets=tuple(names), steps=tuple(table[i] for i in order), records=records,
                reasons=tuple(chosen[i] for i in order))


def _index(table: list[Entry]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(entries at each mount point, entries strictly below each directory), in table order:
    a plan over hundreds of mounts looks each up once."""
    at: dict[str, list[int]] = {}
    under: dict[str, list[int]] = {}
    for i, e in enumerate(table):
        mp = e.mount_point
        at.setdefault(mp, []).append(i)
        while mp != "/":
            mp = os.path.dirname(mp)
            under.setdefault(mp, []).append(i)
    return at, under


def _take(table: list[Entry], at: dict, under: dict, t: str, chosen: dict[int, str], why: str) -> None:
    for i in sorted(at.get(t, []) + under.get(t, [])):
        e = table[i]
        if e.cls == SYSTEM and e.mount_point != t:
            raise AixsmitError(
                f"umount: {visible(t)}: the system file system {visible(e.mount_point)} is mounted below it; unmount refused."
            )
        if e.mount.host_mount:
            continue  # the part of a file system playing "/" is never a step
        if e.mount.vfs in VOLATILE_VFS and e.cls != SYSTEM:
            where = ("over it" if e.mount_point == t else f"below it, at {visible(e.mount_point)},")
            raise AixsmitError(
                f"umount: {visible(t)}: a {e.mount.vfs} is mounted {where} and unmounting it would destroy what it "
                f"holds; unmount refused, nothing was unmounted (unmount the {e.mount.vfs} yourself first if its "
                "contents may go).")
        chosen.setdefault(i, why if e.mount_point == t else "")


def _order(system: System, table: list[Entry], chosen: dict[int, str], needs: dict) -> list[int]:
    """Deepest first; at one path the top-most (listed last) first; a mount before the file
    systems its backing file or layers lie on."""
    order = sorted(chosen, key=lambda i: (-_depth(table[i].mount_point), -i))
    providers = {i: {j for _, j in needs[i]} & chosen.keys() for i in chosen}
    if not any(providers.values()):
        return order

    def before(a: int, b: int) -> bool:  # must a be unmounted before b?
        return b in providers[a]

    for _ in range(len(order)):
        moved = False
        for x in range(len(order)):
            for y in range(x + 1, len(order)):
                if before(order[y], order[x]):
                    order.insert(x, order.pop(y))
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return order


def _record(system: System, table: list[Entry], i: int, at: dict, leaving: set[str]) -> Record:
    e = table[i]
    m = e.mount
    facts = system.host.device_facts(m)  # its identity (Identity.of) and how its loop device was set up
    below = tuple((o.mount.vfs, system.host.identity(o.mount), o.mount.fs_root)
                  for o in (table[k] for k in at[e.mount_point] if k < i) if not o.mount.host_mount)
    backing = facts.get("backing_file", "")
    if system.host.name == "linux" and m.vfs in UUID_VFS and m.device.startswith("/dev/") and not facts.get("uuid"):
        # Without its identity a record could later mount whatever lies at that name.
        raise AixsmitError(f"umount: {visible(e.mount_point)}: the UUID of the {m.vfs} file system on "
                           f"{visible(m.device)} cannot be read (blkid); it is not unmounted, since it could not be "
                           "told apart from another file system when mounted again.")
    return Record(
        mount_point=e.mount_point, path=m.path, root=system.root, source=m.device, vfs=m.vfs,
        fs_root=m.fs_root, vfs_options=tuple(o for o in m.options if o),
        fs_options=tuple(o for o in m.super_options if o), host=system.host.name,
        uuid=facts.get("uuid", ""), backing_file=backing, offset=facts.get("offset", 0),
        sizelimit=facts.get("sizelimit", 0), autoclear=facts.get("autoclear", False),
        # A loop device that outlives its mount would keep the file system of its file busy.
        detach_loop=bool(backing) and not facts.get("autoclear", False) and any(_under(backing, p) for p in leaving),
        below=below, propagation=m.propagation,
    )


# --- holders --------------------------------------------------------------------------------

def holder_lines(holders: list[Holder], system: System | None = None) -> list[str]:
    lines = []
    for h in holders:
        path = system.shown(h.path) if system is not None else h.path
        pid = f"pid {h.pid:>7}" if h.pid else f"{'':>11}"
        lines.append(f"  {pid}  {visible(h.user):<10} {visible(h.command):<16} {h.how} ({LETTER[h.how]}): {visible(path)}")
    return lines


class BusyError(AixsmitError):
    def __init__(self, message: str, holders: list[Holder], system: System | None = None, details=None):
        super().__init__(message, details=(details or []) + holder_lines(holders, system))
        self.holders = holders


def _busy_message(entries: list[Entry], holders: list[Holder], system: System | None = None) -> str:
    busy = [e for e in entries if any(_under(h.path, e.mount.path) for h in holders)]
    e = (busy or entries)[0]
    procs = [h for h in _first_per_pid(holders) if h.pid]
    others = [h for h in holders if not h.pid]
    who = [f"{visible(h.command)} (pid {h.pid}, {visible(h.user)})" for h in procs]
    who += [f"{visible(h.command)} ({h.how} {visible(system.shown(h.path) if system else h.path)})" for h in others]
    n = len(procs) + len(others)
    return (
        f"umount: 0506-349 Cannot unmount {visible(e.mount.device)}: The requested resource is busy. "
        f"{visible(e.mount_point)} is held by {n} {'holder' if n == 1 else 'holders'}: {', '.join(who)}."
    )


def _first_per_pid(holders: list[Holder]) -> list[Holder]:
    seen, out = set(), []
    for h in holders:
        if h.pid not in seen:
            seen.add(h.pid)
            out.append(h)
    return out


# --- unmount --------------------------------------------------------------------------------

@dataclass
class UnmountResult:
    unmounted: list[Entry] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # this call's records, in unmount order
    skipped: list[str] = field(default_factory=list)


def unmount(system: System, plan: Plan, ledger: Ledger, force: bool = False,
            check_holders: bool = True, progress=None, result: UnmountResult | None = None) -> UnmountResult:
    """Carry out ``plan`` all-or-nothing. Raises :class:`BusyError`, :class:`AixsmitError` when a
    record could not be written (that file system and the ones after it stay mounted, the ones
    before it are mounted again) or another step failed. ``result``, when given, is filled as
    the run goes, so a caller interrupted by a signal knows what this call unmounted."""
    result = result if result is not None else UnmountResult()
    with mount_lock("umount"):
        return _unmount(system, plan, ledger, force, check_holders, progress, result)


def _unmount(system: System, plan: Plan, ledger: Ledger, force: bool, check_holders: bool, progress,
             result: UnmountResult) -> UnmountResult:
    if plan.empty:
        return result
    steps = list(plan.steps)
    if check_holders and not force:
        holders = system.host.holders([e.mount for e in steps], system.all_mounts())
        if holders:
            raise BusyError(_busy_message(steps, holders, system) + " Nothing was unmounted.", holders, system)
    run = new_run_id()
    for n, (e, planned) in enumerate(zip(steps, plan.records)):
        rec = stamp(planned, run, n)
        try:
            checkpoint("record")
            ledger.add(rec)  # before umount: a crash from here on leaves a record to recover from
            checkpoint("umount")
            ledger.ensure([*result.records, rec])  # the state directory may have been removed meanwhile
        except LedgerError as exc:
            err = AixsmitError(f"{exc} umount: {visible(e.mount_point)} was not unmounted.")
            _roll_back(system, ledger, result, err)
            raise err from None
        try:
            res = system.host.umount(e.mount, force=force)
        except BaseException:
            if not any(m.path == e.mount.path and system.host.matches(rec, m) for m in system.all_mounts()):
                result.unmounted.append(e)
                result.records.append(rec)
            else:
                _forget(ledger, rec, [])
            raise
        if res.rc == 0:
            result.unmounted.append(e)
            result.records.append(rec)
            if rec.detach_loop:
                from ..host.common import run as run_cmd

                run_cmd(["losetup", "-d", rec.source])
            if progress:
                progress(f"Unmounted {visible(e.mount_point)} ({visible(e.mount.device)}).")
            checkpoint("unmounted")
            continue
        _forget(ledger, rec, [])
        if system.host.is_busy(res):
            holders = system.host.holders([e.mount], system.all_mounts())
            err = BusyError(_busy_message([e], holders, system) if holders else
                            f"umount: 0506-349 Cannot unmount {visible(e.mount.device)}: The requested resource is busy.",
                            holders, system)
        else:
            err = AixsmitError(f"umount: 0506-349 Cannot unmount {visible(e.mount.device)}: {visible(_clean(res.message))}")
        _roll_back(system, ledger, result, err)
        raise err
    try:
        ledger.ensure(result.records)
    except LedgerError as exc:
        err = AixsmitError(f"{exc} The unmounts could not stay recorded.")
        _roll_back(system, ledger, result, err)
        raise err from None
    return result


def _clean(message: str) -> str:
    return message.removeprefix("umount: ")


def _forget(ledger: Ledger, rec: Record, warnings: list[str]) -> None:
    try:
        ledger.forget(rec)
    except LedgerError as exc:
        warnings.append(str(exc))


def _roll_back(system: System, ledger: Ledger, result: UnmountResult, err: AixsmitError) -> None:
    if not result.records:
        err.args = (str(err) + " Nothing was unmounted.",)
        return
    again, failed, warnings, back = [], [], [], []
    for rec in reversed(result.records):  # the reverse of the unmount order
        res = system.host.mount(rec)
        if res.rc == 0:
            _forget(ledger, rec, warnings)
            again.append(rec.mount_point)
            back.append(rec)
        else:
            failed.append(f"{visible(rec.mount_point)} ({visible(_clean(res.message))})")
    note = f" The {len(again)} file system(s) unmounted in this call were mounted again: {visible(', '.join(again))}." if again else ""
    if failed:
        note += f" Could NOT mount again: {', '.join(failed)}; run 'aixsmit cmd mount --ledger'."
    err.args = (str(err) + note,)
    err.details = list(getattr(err, "details", [])) + warnings
    result.unmounted.clear()
    result.records[:] = [r for r in result.records if r not in back]


# --- mount again ------------------------------------------------------------------------------

def _fstab_entry(system: System, mount_point: str) -> Record | None:
    from . import fstab

    e = fstab.by_mount_point(system.root).get(mount_point)
    if e is None:
        return None
    opts = tuple(o for o in e.options.split(",")
                 if o not in ("defaults", "noauto", "auto", "nofail", "user", "users") and not o.startswith("x-"))
    uuid = e.device[5:] if e.device.startswith("UUID=") else ""
    return Record(mount_point=mount_point, path=system.abs_path(mount_point), root=system.root,
                  source=e.device, vfs=e.vfs, vfs_options=opts, host=system.host.name, uuid=uuid)


@dataclass
class MountResult:
    mounted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def mount_again(system: System, ledger: Ledger, mount_points: list[str] | None = None,
                from_ledger: bool = False, progress=None, records: list[Record] | None = None,
                result: MountResult | None = None) -> list[str]:
    """Mount again ledger records (``from_ledger``: every one under the root; ``records``: just
    these, as a run gives back its own) and/or named mount points (from the ledger, else
    ``ROOT/etc/fstab``), in the reverse order of their unmounts. Returns the mount points
    mounted; goes on past a failure and then raises one error naming each (``details``).
    ``result``, when given, is filled as the mounts go: after a failure it still says which
    were mounted."""
    with mount_lock("mount"):
        res = _mount_again(system, ledger, mount_points, from_ledger, progress, records, result)
    if res.errors:
        raise AixsmitError(res.errors[0] if len(res.errors) == 1 else
                           f"mount: {len(res.errors)} file systems could not be mounted again:",
                           details=(res.errors if len(res.errors) > 1 else []) + res.warnings)
    return res.mounted


def _mount_again(system: System, ledger: Ledger, mount_points: list[str] | None, from_ledger: bool,
                 progress, records: list[Record] | None, out: MountResult | None = None) -> MountResult:
    out = out if out is not None else MountResult()
    say = progress or (lambda line: None)
    wanted: list[Record] = list(records or [])
    if from_ledger or mount_points:
        found, problems = ledger.scan()
        out.errors += problems
        root = system.root.rstrip("/") or "/"
        entries = [r for r in found if root == "/" or _under(r.path, root)]
        if from_ledger:
            wanted += [r for r in entries if r not in wanted]
        for mp in mount_points or []:
            path = system.abs_path(mp)
            hit = [r for r in entries if r.path == path]
            if hit:
                wanted += [r for r in hit if r not in wanted]
                continue
            fs = _fstab_entry(system, os.path.normpath(mp)) if system.host.name == "linux" else None
            if fs is None and system.host.name == "aix":
                fs = Record(mount_point=mp, path=path, root=system.root, source="", vfs="", host="aix")
            if fs is None:
                out.errors.append(f"mount: 0506-334 {visible(mp)} is not a known file system.")
                continue
            wanted.append(fs)
    # The reverse of the unmount order: parents and the lower mounts of a stack first.
    wanted.sort(key=lambda r: (r.seq, r.order, -_depth(r.path)), reverse=True)
    for rec in wanted:
        checkpoint("mount")
        here = [m for m in system.all_mounts() if m.path == rec.path]
        if any(system.host.matches(rec, m) for m in here) or (not rec.id and here and not rec.vfs):
            _forget(ledger, rec, out.warnings)
            out.already.append(rec.mount_point)
            say(f"{visible(rec.mount_point)} is already mounted.")
            continue
        if (rec.id or here) and not _stack_is(system, here, rec.below):
            top_m = here[-1] if here else None
            out.errors.append(f"mount: 0506-333 {visible(rec.mount_point)} is already mounted (by {visible(top_m.device if top_m else '?')}); "
                              f"{visible(rec.source)} was not mounted over it." if here else
                              f"mount: 0506-324 Cannot mount {visible(rec.source)} on {visible(rec.mount_point)}: it was stacked over "
                              f"{visible(str(rec.below[-1][1]) if rec.below else '?')}, which is not mounted now.")
            continue
        if system.host.name == "aix" and not rec.source:
            from ..host.common import run

            res = run(["mount", rec.path])
        else:
            res = system.host.mount(rec)
        if res.rc != 0:
            out.errors.append(f"mount: 0506-324 Cannot mount {visible(rec.source)} on {visible(rec.mount_point)}: "
                              f"{visible(_clean(res.message).removeprefix('mount: '))}")
            continue
        checkpoint("mounted")
        _forget(ledger, rec, out.warnings)
        out.mounted.append(rec.mount_point)
        # The device really mounted (a loop file may be on another number now), as mountinfo says.
        now = [m for m in system.all_mounts() if m.path == rec.path]
        device = now[-1].device if now else rec.source
        say(f"Mounted {visible(rec.mount_point)} ({visible(device)}{f'[{visible(rec.fs_root)}]' if rec.is_bind else ''}).")
    for w in out.warnings:
        say(f"WARNING: {w} It is mounted; 'aixsmit cmd mount --ledger' clears the record later.")
    return out


def _stack_is(system: System, here: list[Mount], below: tuple) -> bool:
    """Whether the mounts ``here`` (bottom first) are the recorded stack ``below``: the same
    type, FSROOT and file system (the one identity, whatever the devices are called now)."""
    return len(here) == len(below) and all(
        m.vfs == vfs and m.fs_root == fs_root and system.host.holds(ident, m)
        for m, (vfs, ident, fs_root) in zip(here, below))


def settle(system: System, ledger: Ledger) -> list[Record]:
    """The records under the root whose file system is not mounted as recorded; the records of
    ones that are (a crash between a mount and forgetting its record) are forgotten."""
    with mount_lock("mount"):
        left = []
        mounts = system.all_mounts()
        for rec in ledger.under(system.root):
            if any(m.path == rec.path and system.host.matches(rec, m) for m in mounts):
                _forget(ledger, rec, [])
            else:
                left.append(rec)
        return left
