"""Scheduled backups: a weekly full system image, daily user backups by level.

Schedules live in the state directory (``schedules.json``, written atomically) and reach the
scheduler in use (:mod:`.scheduler`: a cron file, root's crontab on AIX, or systemd timers),
which runs ``aixsmit cmd schedule run --quiet ID``. A run:

* takes the one lock (``state.mount_lock``), so runs never overlap each other nor an
  operator's unmount or mksysb; one that finds it held is recorded as skipped;
* keeps a log and a record (result, start, end) per run in ``runs/ID/`` of the state
  directory, for ``schedule list``; a failed or skipped run is also told to the system log
  and, where a mailer exists, to root by mail (:mod:`.notify`);
* system: ``sysbackup`` to a new image in the destination; user: a chain per file system
  (:mod:`..backup.chains`): a full on the weekly day, or whenever the schedule's own full is
  missing, and a level 1 on the others;
* keeps the last N weeks (default 4), removing older ones only after a newer full succeeded.

Every value is checked when the schedule is added (file systems mounted and of user data, a
destination that is an existing directory outside them, no control characters), and the
destination again at each run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from ..errors import AixsmitError
from ..safefile import create_new
from ..state import DEFAULT_STATE_DIR, LockBusy, atomic_write_json, mount_lock, state_dir
from .scheduler import control_free

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron: Sunday = 0
RESULTS = ("OK", "WARN", "FAILED", "SKIPPED")
ID_RE = re.compile(r"(system|user)[1-9][0-9]{0,5}")
STORE_VERSION = 2

Emit = Callable[[str, str], None]


def clock() -> dt.datetime:
    """Local time now. ``AIXSMIT_NOW`` (``YYYY-mm-ddTHH:MM[:SS]``) stands in for it, for tests
    of a simulated week; it is honoured only with a state directory other than the default."""
    fake = os.environ.get("AIXSMIT_NOW")
    state = os.environ.get("AIXSMIT_STATE_DIR")
    if fake and state and os.path.abspath(state) != DEFAULT_STATE_DIR:
        try:
            return dt.datetime.fromisoformat(fake)
        except ValueError:
            raise AixsmitError(f"AIXSMIT_NOW: '{fake}' is not a date and time (YYYY-mm-ddTHH:MM)", code=2)
    return dt.datetime.now()


@dataclass
class Schedule:
    id: str
    kind: str  # system | user
    dest: str
    day: int  # the weekly day (0 = Sunday): the system image, or the users' full backup
    hour: int
    minute: int
    daily: bool = False  # user: every day (level 1), full on ``day``
    filesystems: list[str] = field(default_factory=list)  # user: empty with all_user
    all_user: bool = False
    root: str = "/"
    keep_weeks: int = 4

    def cron_fields(self) -> str:
        return f"{self.minute} {self.hour} * * {'*' if self.daily else self.day}"

    def describe(self) -> str:
        when = f"{DAYS[self.day].title()} {self.hour:02d}:{self.minute:02d}"
        if self.kind == "system":
            return f"system image every {when}"
        what = "all user file systems" if self.all_user else " ".join(self.filesystems)
        return f"{what}: full {when}, level 1 daily {self.hour:02d}:{self.minute:02d}"

    def next_run(self, now: dt.datetime | None = None) -> dt.datetime:
        now = now or clock()
        for add in range(0, 8):
            d = now.date() + dt.timedelta(days=add)
            at = dt.datetime.combine(d, dt.time(self.hour, self.minute))
            cron_dow = (d.weekday() + 1) % 7
            if at > now and (self.daily or cron_dow == self.day):
                return at
        raise AssertionError("unreachable")


def parse_when(text: str, daily: bool) -> tuple[int, int, int]:
    """``DAY@HH:MM`` (weekly) or ``HH:MM`` (daily) -> (day, hour, minute)."""
    day = 0
    if "@" in text:
        d, _, text = text.partition("@")
        d = d.strip().lower()[:3]
        if d not in DAYS:
            raise AixsmitError(f"schedule: '{d}' is not a day (sun, mon, tue, wed, thu, fri, sat)", code=2)
        day = DAYS.index(d)
    elif not daily:
        raise AixsmitError("schedule: --weekly takes DAY@HH:MM, for example sun@05:30", code=2)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise AixsmitError(f"schedule: '{text}' is not a time of day HH:MM", code=2)
    return day, int(m.group(1)), int(m.group(2))


# --- checks ---------------------------------------------------------------------------------

def check_dest(dest: str, what: str = "the destination") -> str:
    """``dest`` as an absolute, resolved path of an existing directory, or a one-line error."""
    control_free(what, dest)
    if not dest.startswith("/"):
        raise AixsmitError(f"schedule: {what} {dest} must be an absolute path (start with '/').", code=2)
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        raise AixsmitError(f"schedule: {what} {dest} does not exist: make the directory first.", code=2)
    except OSError as exc:
        raise AixsmitError(f"schedule: {what} {dest}: {exc.strerror}", code=2)
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise AixsmitError(f"schedule: {what} {dest} is not a directory (each run writes new files into a "
                           "directory).", code=2)
    real = os.path.realpath(dest)
    why = _changeable(real)
    if why:
        raise AixsmitError(f"schedule: {what} {dest}: {why}: another user could put their own archives where root "
                           "reads and restores them; refused (chmod o-w,g-w it, or chmod +t for a shared folder).",
                           code=2)
    return real


def _changeable(path: str) -> str:
    """Why another user could change what the names in folder ``path`` lead to ("" if nobody
    can): the first folder from / down to it that is not root's, or is writable by group or
    others without the sticky bit (safefile.trusted_folder)."""
    import stat

    from ..safefile import trusted_folder

    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) + 1):
        cur = "/" + "/".join(parts[:i])
        if trusted_folder(cur):
            continue
        try:
            st = os.lstat(cur)
        except OSError as exc:
            return f"{cur}: {exc.strerror}"
        if st.st_uid not in (0, os.geteuid()):
            import pwd

            try:
                owner = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:
                owner = f"uid {st.st_uid}"
            return f"{cur} belongs to {owner}"
        who = "others" if st.st_mode & 0o002 else "its group"
        return f"{cur} is writable by {who} without the sticky bit (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def check(s: Schedule) -> None:
    """Every value of ``s`` against what it names, before anything is written."""
    from ..fs.classify import USER
    from ..fs.table import System, top

    if not ID_RE.fullmatch(s.id):
        raise AixsmitError(f"schedule: '{s.id}' is not a schedule name", code=2)
    control_free("the root", s.root)
    if not os.path.isdir(s.root):
        raise AixsmitError(f"schedule: the root {s.root} is not a directory.", code=2)
    s.dest = check_dest(s.dest)
    if not 1 <= s.keep_weeks <= 520:
        raise AixsmitError(f"schedule: --keep {s.keep_weeks}: keep 1 to 520 weeks.", code=2)
    system = System(root=s.root)
    user = {e.mount_point: e for e in top(system.table(), USER)}
    for fs in s.filesystems:
        control_free("the file system", fs)
        if fs not in user:
            raise AixsmitError(f"schedule: {fs} is not a mounted user file system"
                               f"{'' if s.root == '/' else ' under ' + s.root}.", code=2)
    for fs in s.filesystems if s.kind == "user" else []:
        if _inside(s.dest, os.path.realpath(system.abs_path(fs))):
            raise AixsmitError(f"schedule: the destination {s.dest} is inside {fs}, which this schedule backs up.",
                               code=2)


# --- the store ------------------------------------------------------------------------------

def _store() -> Path:
    return state_dir() / "schedules.json"


def load() -> list[Schedule]:
    try:
        data = json.loads(_store().read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise AixsmitError(f"{_store()}: the schedule list cannot be read: {exc}")
    names = {f.name for f in fields(Schedule)}
    try:
        # Version 1 kept the last result inside the schedule; runs now keep their own records.
        return [Schedule(**{k: v for k, v in s.items() if k in names}) for s in data.get("schedules", [])]
    except (TypeError, AttributeError) as exc:
        raise AixsmitError(f"{_store()}: the schedule list cannot be read: {exc}")


def save(schedules: list[Schedule]) -> None:
    atomic_write_json(_store(), {"version": STORE_VERSION, "schedules": [asdict(s) for s in schedules]}, 0o600)


def find(sid: str, schedules: list[Schedule] | None = None) -> Schedule:
    for s in schedules if schedules is not None else load():
        if s.id == sid:
            return s
    raise AixsmitError(f"schedule: there is no schedule {sid} (aixsmit cmd schedule list)")


def new_id(kind: str, schedules: list[Schedule]) -> str:
    n = 1
    ids = {s.id for s in schedules}
    while f"{kind}{n}" in ids:
        n += 1
    return f"{kind}{n}"


# --- run records ----------------------------------------------------------------------------

def runs_dir(sid: str) -> Path:
    if not ID_RE.fullmatch(sid):
        raise AixsmitError(f"schedule: '{sid}' is not a schedule name", code=2)
    d = state_dir() / "runs" / sid
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def records(sid: str) -> list[dict]:
    """Every run of ``sid`` recorded, oldest first."""
    d = state_dir() / "runs" / sid
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: (r.get("start", ""), r.get("log", "")))


def last_run(sid: str) -> dict:
    found = records(sid)
    return found[-1] if found else {}


def _new_log(d: Path, stamp: str):
    for name in (f"{stamp}.log", f"{stamp}-{os.getpid()}.log"):
        try:
            fd = create_new(str(d / name))
            return d / name, os.fdopen(fd, "w", errors="backslashreplace")
        except FileExistsError:
            continue
    raise AixsmitError(f"schedule: cannot make a log in {d}: {stamp}.log exists")


class _Stopped(Exception):
    """SIGTERM or SIGHUP during a run (systemd stopping the unit, a shutdown, cron's session)."""


_stop_signal: int | None = None  # the signal that asked the run to stop
_writing: Path | None = None  # the archive being written, once its backup began


def _stop(signum, frame):
    """SIGTERM/SIGHUP: the run stops at its next step (_check_stop), and the command it waits
    for (tar) is sent SIGTERM now. Nothing is raised here: an exception raised at whatever
    point the run is could land between taking a lock and entering its block."""
    global _stop_signal
    _stop_signal = signum
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid == me:
                os.kill(int(entry), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile


def _check_stop() -> None:
    """Between the run's steps: raise _Stopped if a signal asked for the stop."""
    if _stop_signal is not None:
        raise _Stopped(signal.Signals(_stop_signal).name)


def _stopped_line(name: str) -> str:
    """What a stop did to the archive being written, as the folder shows it now."""
    said = f"schedule: the run was stopped by {name}"
    archive = _writing
    if archive is None:
        return f"{said}; no archive was being written."
    if archive.exists():
        return f"{said}; {archive} is complete."
    from ..backup.destination import partial_marker

    left = sorted(archive.parent.glob(f".{archive.name}{partial_marker()}{os.getpid()}-*"))
    if left:
        return f"{said}; its partial archive {left[0]} could not be removed: remove it."
    return f"{said}; its partial archive of {archive} was removed."


def run_schedule(sid: str, emit: Emit, now: dt.datetime | None = None) -> int:
    """One run, as the scheduler starts it. Whatever happens - the lock held, the schedule
    gone, the destination no longer a directory, a backup failing, SIGTERM - the run leaves a
    log and a record, and one that did not succeed is told to someone. Returns the exit status
    (0 done, 1 failed or skipped, 2 wrong usage, 3 the backup failed, 128+N stopped by signal N)."""
    from .notify import notify

    now = now or clock()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    try:
        log_path, log = _new_log(runs_dir(sid), stamp)
    except (OSError, AixsmitError) as exc:
        # Not even a log: the state directory is full, read-only or refused. Still say it.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        subject = f"scheduled backup {sid} could not start at {now:%Y-%m-%d %H:%M}: no log can be written ({why})"
        notify(subject, subject)
        raise AixsmitError(f"schedule: {subject}")
    started = time.time()
    broken: list[str] = []

    def tee(line: str, stream: str) -> None:
        try:
            log.write(line + "\n")
            log.flush()
        except OSError as exc:  # the state directory filled up during the run
            broken.append(exc.strerror or str(exc))
        emit(line, stream)

    result, code, stopped = "FAILED", 1, False
    global _stop_signal, _writing
    _stop_signal, _writing = None, None
    main = threading.current_thread() is threading.main_thread()
    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)} if main else {}
    try:
        # The one lock of everything that unmounts or mounts again: a scheduled run never
        # overlaps another, nor an operator's unmount, mksysb or walkthrough.
        with mount_lock(f"schedule {sid}"):
            _check_stop()
            code, result = _run(find(sid), stamp, now, tee)
    except LockBusy as exc:
        tee(f"{exc} This run is skipped.", "stderr")
        result, code = "SKIPPED", 1
    except _Stopped:
        stopped = True
    except AixsmitError as exc:
        tee(str(exc), "stderr")
        code, stopped = exc.code or 1, _stop_signal is not None
    except OSError as exc:
        tee(f"schedule: {exc.filename or ''}: {exc.strerror or exc}", "stderr")
        stopped = _stop_signal is not None
    except Exception as exc:  # noqa: BLE001 - whatever broke, the run is recorded and told
        tee(f"schedule: the run stopped: {type(exc).__name__}: {exc}", "stderr")
        stopped = _stop_signal is not None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if stopped and _stop_signal is not None:
        tee(_stopped_line(signal.Signals(_stop_signal).name), "stderr")
        result, code = "FAILED", 128 + _stop_signal
    record = {"id": sid, "start": now.strftime("%Y-%m-%d %H:%M:%S"), "result": result, "code": code,
              "log": str(log_path), "seconds": round(time.time() - started, 1),
              "host_time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if broken:
        record["log_incomplete"] = broken[0]
    if result in ("FAILED", "SKIPPED") or broken:
        subject = f"scheduled backup {sid} {result.lower()} at {record['start']}"
        try:
            body = log_path.read_text(errors="replace")[-8000:]
        except OSError:
            body = ""
        record["told"] = notify(subject, f"{subject}. Its log: {log_path}\n\n{body}")
        tee(f"schedule: told: {', '.join(record['told'])}", "stdout")
    try:
        log.close()
    except OSError:
        pass
    atomic_write_json(log_path.with_suffix(".json"), record)
    return code


def _run(s: Schedule, stamp: str, now: dt.datetime, emit: Emit) -> tuple[int, str]:
    from ..fs.table import System

    emit(f"schedule: {s.id} ({s.describe()}) started {now:%Y-%m-%d %H:%M:%S}.", "stdout")
    system = System(root=s.root)
    dest = Path(check_dest(s.dest))
    if s.kind == "system":
        from ..backup import sysbackup

        image = dest / f"{socket.gethostname()}-{stamp}.mksysb"
        summary = sysbackup.run(system, str(image), emit)
        if summary.code != 0:
            return summary.code, "FAILED"
        images = sorted(dest.glob("*.mksysb"))
        for p in images[:-s.keep_weeks]:
            p.unlink(missing_ok=True)
            emit(f"schedule: removed {p} (older than the last {s.keep_weeks} weeks)", "stdout")
        return 0, "OK" if summary.status == "OK" else "WARN"
    from ..fs.classify import USER

    level = 0 if (now.weekday() + 1) % 7 == s.day else 1
    targets = s.filesystems
    if s.all_user:
        from ..fs.table import top

        targets = [e.mount_point for e in top(system.table(), USER)]
    if not targets:
        emit("schedule: no user file system is mounted: nothing to back up.", "stdout")
        return 0, "OK"
    worst, code = "OK", 0
    for mp in targets:
        _check_stop()
        try:
            status = _backup_one(s, system, dest, mp, level, stamp, emit)
        except AixsmitError as exc:
            _check_stop()  # tar stopped by the signal: the stop is what is said
            emit(str(exc), "stderr")
            code, worst = exc.code or 1, "FAILED"
            continue
        if status == "WARN" and worst == "OK":
            worst = "WARN"
    return code, worst


def _backup_one(s: Schedule, system, dest: Path, mp: str, level: int, stamp: str, emit: Emit) -> str:
    from ..backup import chains
    from ..backup.incremental import Chain, backup_fs, legacy_key

    host = system.abs_path(mp)
    if _inside(str(dest), os.path.realpath(host)):
        raise AixsmitError(f"schedule: the destination {dest} is inside {mp}; {mp} is not backed up.")
    folder = chains.fs_folder(dest, mp)
    old = dest / legacy_key(mp)
    if old != folder and old.is_dir():
        emit(f"schedule: note: {old} holds backups of an earlier version, named so that they may belong to another "
             f"file system; this schedule's backups of {mp} are in {folder}.", "stdout")
    fd = chains.open_folder(folder, create=True)  # made 0700, or checked: root's, no link, nobody else's to write
    try:
        found = chains.list_chains(folder)
        last = found[-1] if found else None
        base = chains.snapshot(s.id, mp, last.stamp) if last and last.full and last.path != folder else None
        if level == 1 and (base is None or not base.exists()):
            emit(f"schedule: no full backup of {mp} of this schedule's own is in {folder}: this run makes one "
                 "(level 0).", "stdout")
            level = 0
        if level == 0:
            chain_dir = folder / stamp
            if os.path.lexists(chain_dir):
                raise AixsmitError(f"schedule: {chain_dir} exists already; this run makes no second chain there.")
            os.close(chains.private_folder(fd, stamp, str(chain_dir), create=True))
            archive = chain_dir / f"{stamp}.L0.tar"
            spec = Chain(None, chains.snapshot(s.id, mp, stamp))
        else:
            chain_dir = last.path  # type: ignore[union-attr]
            archive = chain_dir / f"{stamp}.L1.tar"
            spec = Chain(base, None)
    finally:
        os.close(fd)
    global _writing
    try:
        _check_stop()
        _writing = archive
        res = backup_fs(host, mp, level, str(archive), False, emit, chain=spec)
    except BaseException:
        if level == 0:
            try:
                chain_dir.rmdir()  # a chain without its full would only mislead
            except OSError:
                pass
        raise
    if level == 0:
        chains.prune(folder, s.id, mp, s.keep_weeks, emit)
    return res.status
