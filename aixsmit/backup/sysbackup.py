"""The guide's whole procedure as one safe run (``aixsmit cmd sysbackup``).

1. classify the mounted file systems;
2. check the destination: never on a user file system about to be unmounted, and with room
   for the estimated image;
3. unmount every mounted user file system (all-or-nothing; busy ones name their holders — or,
   with ``skip_busy``, stay mounted and are left out of the image);
4. check that only system file systems are mounted;
5. make the image (mksysb) with progress;
6. mount again everything step 3 unmounted — always, whatever happened, also on Ctrl-C, SIGTERM
   or SIGHUP (a SIGKILL leaves the ledger, from which ``aixsmit cmd mount --ledger`` recovers);
7. verify the image, and summarise.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import AixsmitError
from ..fs.classify import SYSTEM, USER
from ..fs.table import System, top, used_below, user_mount_points
from ..fs.ledger import checkpoint
from ..fs.mounts import visible
from ..fs.unmount import BusyError, Ledger, MountResult, UnmountResult, mount_again, plan_unmount, settle, unmount
from ..fs.volume_groups import find
from . import archive
from .engine import (EXIT_FAILED, EXIT_SIGNAL, BackupFailed, ImageInterrupted, ImageRequest, create_image,
                     request_stop)
from .destination import packed_ratio, packed_size
from .excludes import ExcludeList, load as load_excludes

Emit = Callable[[str, str], None]

EXIT_REFUSED, EXIT_REMOUNT_FAILED = 1, 5


class Interrupted(Exception):
    pass


@dataclass
class Summary:
    image: str
    status: str = "FAILED"  # OK, WARN, FAILED
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unmounted: list[str] = field(default_factory=list)
    remounted: list[str] = field(default_factory=list)
    left_mounted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verified: str = ""
    code: int = EXIT_FAILED
    made: bool = False  # the image was written whole (whatever happened after)


def _under(path: str, mp_path: str) -> bool:
    return path == mp_path or path.startswith(mp_path.rstrip("/") + "/")


def check_destination(system: System, dest: str, leaving: list, required: int) -> tuple[int, int]:
    """Refuse a destination on a file system this run unmounts, or without room.
    Returns (required, available) bytes."""
    if not dest.startswith("/"):
        raise AixsmitError("sysbackup: 0512-006 Backup device or file name must start with a '/'.", code=EXIT_REFUSED)
    try:
        dest.encode("utf-8")
    except UnicodeEncodeError:
        # One rule: a name that is not text is refused up front, before anything changes (the
        # image's header, the backup log and every message name it as text).
        raise AixsmitError(f"sysbackup: the destination {visible(dest)} is not valid UTF-8; choose a name made "
                           "of text. Nothing was changed.", code=EXIT_REFUSED) from None
    real = os.path.realpath(dest)
    for e in leaving:
        if _under(real, e.mount.path):
            raise AixsmitError(
                f"sysbackup: the destination {visible(dest)} lies on the user file system {visible(e.mount_point)}, which this "
                "procedure unmounts before the backup. Choose a destination on a system file system, another "
                "disk or a tape.", code=EXIT_REFUSED)
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        raise AixsmitError(f"sysbackup: the directory {visible(directory)} of the destination does not exist.", code=EXIT_REFUSED)
    st = os.statvfs(directory)
    available = st.f_bavail * st.f_frsize
    if os.path.exists(real) and not os.path.isdir(real):
        available += os.stat(real).st_size if os.stat(real).st_dev == os.stat(directory).st_dev else 0
    if required > available:
        raise AixsmitError(
            f"sysbackup: not enough room for the image in {visible(directory)}: about {required // (1024 * 1024) + 1} MB "
            f"are needed and {available // (1024 * 1024)} MB are available. Nothing was changed.", code=EXIT_REFUSED)
    return required, available


def estimate(system: System, keep: list[str]) -> int:
    """Bytes the image will take: what is used on the system file systems it will hold. Where
    ``--root DIR`` is not a mount point, only what lies below DIR on its file system counts,
    not the whole host file system."""
    total = 0
    table = system.table()
    others = {e.mount.path for e in table}
    for e in table:
        if e.cls == "system" and e.mount.path not in keep:
            if e.mount.host_mount:
                total += used_below(e.mount.path, others - {e.mount.path})[0]
                continue
            try:
                st = os.statvfs(e.mount.path)
            except OSError:
                continue
            total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total + 1024 * 1024


def run(system: System, dest: str, emit: Emit, skip_busy: bool = False, exclude: bool = False,
        new_data: bool = True, wait: float | None = 0) -> Summary:
    """The whole procedure, holding the mount lock from the first look at the ledger to the last
    mount again (``wait`` seconds for it: 0 fails at once, None waits). Raises
    :class:`~aixsmit.state.LockBusy` or :class:`AixsmitError` when refused before anything
    changed; afterwards every outcome is in the returned :class:`Summary` (``code``)."""
    from ..state import mount_lock

    with mount_lock("sysbackup", wait=wait):
        return _run(system, dest, emit, skip_busy, exclude, new_data)


def _run(system: System, dest: str, emit: Emit, skip_busy: bool, exclude: bool, new_data: bool) -> Summary:
    start = time.monotonic()
    summary = Summary(image=dest)
    ledger = Ledger()
    say = lambda line="": emit(line, "stdout")  # noqa: E731

    left = settle(system, ledger)
    if left:
        raise AixsmitError(
            "sysbackup: user file systems were left unmounted by an earlier aixsmit run: "
            + ", ".join(visible(e.mount_point) for e in left)
            + ". Mount them again first: aixsmit cmd mount --ledger" + (f" --root {visible(system.root, spaces=True)}" if system.root != "/" else ""),
            code=EXIT_REFUSED)

    say("Step 1 of 7: Finding system data and user data.")
    table = system.table()
    users, systems = user_mount_points(table), top(table, SYSTEM)
    say(f"  system file systems: {' '.join(visible(e.mount_point, spaces=True) for e in systems) or '(none)'}")
    say(f"  user file systems:   {' '.join(visible(mp, spaces=True) for mp in users) or '(none)'}")

    say("Step 2 of 7: Checking the destination.")
    try:
        plan = plan_unmount(system, [], all_user=True, table=table)
    except AixsmitError as exc:  # the plan cannot be carried out whole: refuse before any change
        raise AixsmitError(f"sysbackup: {str(exc).removeprefix('umount: ')} Nothing was changed.",
                           code=EXIT_REFUSED) from None
    # The image is packed: what the system's files take, as much as a sample of them packs.
    tops = [e.mount.path for e in systems]
    required = packed_size(estimate(system, []), packed_ratio(tops))
    required, available = check_destination(system, dest, list(plan.steps), required)
    say(f"  {visible(dest)}: about {required // (1024 * 1024) + 1} MB needed, {available // (1024 * 1024)} MB available.")

    say("Step 3 of 7: Unmounting the user file systems.")
    skipped: list[str] = []
    if not plan.empty:
        holders = system.host.holders([e.mount for e in plan.steps], system.all_mounts())
        if holders and skip_busy:
            busy_paths = set()
            for h in holders:
                for e in plan.steps:
                    if _under(h.path, e.mount.path):
                        busy_paths.add(e.mount_point)
            # A busy file system stays mounted with everything below it; it is left out of the image.
            tops = [mp for mp in set(users)
                    if not any(_under(mp, b) or _under(b, mp) for b in busy_paths)]
            skipped = sorted(set(users) - set(tops))
            plan = plan_unmount(system, tops, table=table) if tops else plan_unmount(system, [], table=[])
            for mp in skipped:
                summary.warnings.append(f"{visible(mp)} is busy: it stays mounted and is left out of the image")
                emit(f"  WARNING: {visible(mp)} is busy; it stays mounted and is left out of the image.", "stderr")
    done: list[str] = []
    mine = UnmountResult()  # filled as the unmounts go: what this run must mount again
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if not plan.empty:
            unmount(system, plan, ledger, progress=lambda l: say("  " + l), result=mine)
            done = [e.mount_point for e in mine.unmounted]
        summary.unmounted = done
        if not done:
            say("  No user file system is mounted.")

        say("Step 4 of 7: Checking that only the system is mounted.")
        check = system.sysonly()
        still = [mp for mp in check.user if mp not in skipped and not any(_under(mp, s) for s in skipped)]
        if still:
            raise AixsmitError(f"sysbackup: user file systems are still mounted: {', '.join(map(visible, still))}. Backup canceled.",
                               code=EXIT_FAILED)
        say("  Only system file systems are mounted" + (f" (and, left out of the image: {', '.join(map(visible, skipped))})." if skipped else "."))

        say("Step 5 of 7: Backing up the system (mksysb).")
        vg = find(system, "rootvg")
        excl = load_excludes(os.path.join(system.root, "etc", "exclude.rootvg")) if exclude else ExcludeList()
        req = ImageRequest("mksysb", vg, system, dest, new_data=new_data, excludes=excl, exclude_fs=tuple(skipped))
        checkpoint("image")
        result = create_image(req, emit)
        summary.made = True
        summary.files, summary.bytes = result.files, result.bytes
        summary.status = result.status
        summary.warnings += result.warnings[:20]
        summary.code = 0
    except (Interrupted, ImageInterrupted) as exc:
        emit(f"0512-007 sysbackup: Abnormal program termination ({exc}).", "stderr")
        summary.code = EXIT_SIGNAL
    except BusyError as exc:
        emit(str(exc), "stderr")
        for line in exc.details:
            emit(line, "stderr")
        summary.code = EXIT_REFUSED if not done else EXIT_FAILED
    except BackupFailed as exc:
        for line in str(exc).split("\n"):
            emit(line, "stderr")
        summary.code = EXIT_FAILED
    except AixsmitError as exc:
        emit(str(exc), "stderr")
        for line in exc.details:
            emit(line, "stderr")
        summary.code = exc.code or EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 — whatever it was, mount again and say what happened
        emit(f"sysbackup: the backup failed: {type(exc).__name__}: {visible(str(exc))}. Backup canceled.", "stderr")
        summary.code = EXIT_FAILED
    finally:
        # Whatever happened: mount again what this run unmounted. Signals wait until it is done.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        try:
            say("Step 6 of 7: Mounting the user file systems again.")
            summary.unmounted = summary.unmounted or [r.mount_point for r in mine.records]
            if mine.records:
                # Only this run's own records: another process's are never touched. The result
                # is filled as the mounts go, so a failure still says which were mounted.
                again = MountResult()
                try:
                    mount_again(system, ledger, records=mine.records, progress=lambda l: say("  " + l), result=again)
                finally:
                    summary.remounted = list(again.mounted)
            else:
                say("  Nothing to mount again.")
        except AixsmitError as exc:
            emit(f"sysbackup: CRITICAL: {exc}", "stderr")
            for line in exc.details:
                emit(line, "stderr")
            emit("sysbackup: run 'aixsmit cmd mount --ledger' to mount them again.", "stderr")
            summary.code = EXIT_REMOUNT_FAILED
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    summary.left_mounted = skipped
    if summary.code == EXIT_REFUSED and summary.unmounted:
        summary.code = EXIT_FAILED  # 1 says "refused before anything changed": not so once unmounted

    if summary.made and summary.code in (0, EXIT_REMOUNT_FAILED):
        # A complete image is verified even when mounting again failed: it is the operator's
        # backup either way. A signal here stops the verify, not the summary (exit 4).
        say("Step 7 of 7: Verifying the image.")
        old = {s: signal.signal(s, _raise_now) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            v = archive.verify(dest, "sysbackup")
        except Interrupted as exc:
            emit(f"0512-007 sysbackup: Abnormal program termination ({exc}).", "stderr")
            emit(f"sysbackup: the image was not verified; run 'aixsmit cmd verify -f {visible(dest)}'.", "stderr")
            v = archive.Verification(dest, status="not verified (stopped)")
            if summary.code == 0:
                summary.code = EXIT_SIGNAL
        except Exception as exc:  # noqa: BLE001 — the summary is still printed
            v = archive.Verification(dest, status="FAILED",
                                     problems=[f"the image cannot be verified: {type(exc).__name__}: {visible(str(exc))}"])
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        summary.verified = v.status
        say(f"  {v.members} members read, {v.status}." if not v.status.startswith("not") else f"  {v.status}.")
        for p in v.problems[:5] + v.warnings[:5]:
            say(f"    {visible(p)}")
        if v.status == "FAILED":
            if summary.code == 0:
                summary.code = EXIT_FAILED
            summary.status = "FAILED"
        elif v.status == "WARN" and summary.status == "OK":
            summary.status = "WARN"
    summary.seconds = time.monotonic() - start
    _print_summary(summary, say)
    return summary


def _raise_now(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def _raise(signum, frame):
    if not request_stop(signum):  # an image being made stops at its next safe point
        raise Interrupted(signal.Signals(signum).name)


def _print_summary(s: Summary, say) -> None:
    say("")
    say("Summary")
    say(f"  Image:            {visible(s.image) if s.made else '(none: the backup did not complete)'}")
    if s.made:
        say(f"  Size:             {s.bytes // (1024 * 1024)} MB, {s.files} files")
        say(f"  Verified:         {s.verified}")
    say(f"  Duration:         {int(s.seconds) // 60}:{int(s.seconds) % 60:02d}")
    say(f"  Unmounted:        {' '.join(visible(m, spaces=True) for m in s.unmounted) or '(none)'}")
    say(f"  Mounted again:    {' '.join(visible(m, spaces=True) for m in s.remounted) or '(none)'}")
    if s.left_mounted:
        say(f"  Left out (busy):  {' '.join(visible(m, spaces=True) for m in s.left_mounted)}")
    if s.warnings:
        say(f"  Warnings:         {len(s.warnings)}")
        for w in s.warnings[:10]:
            say(f"    {visible(w)}")
    say(f"  Result:           {'OK' if s.code == 0 and s.status == 'OK' else 'OK with warnings' if s.code == 0 else 'FAILED'}")
