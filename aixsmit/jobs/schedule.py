"""Scheduled backups: a weekly full system image, daily user backups by level.

Schedules live in the state directory (``schedules.json``, written atomically). On Linux they
become lines of ``/etc/cron.d/aixsmit`` (``AIXSMIT_CRON_DIR`` names another folder); on AIX, a
marked block of root's crontab, in the documented field forms only (numbers, ``*``, ranges:
no ``*/n``, no ``@daily``). Each line runs ``aixsmit cmd schedule run ID``, which:

* takes a lock, so runs never overlap (a second one is skipped and says why);
* keeps a log per run, and the result in the schedule list;
* system: ``sysbackup`` to a new image in the destination; user: level 0 on the weekly day,
  level 1 on the others (a level 1 with no level 0 becomes a full one);
* keeps the last N weeks (default 4) of chains, removing older ones only after a newer full
  succeeded.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import AixsmitError
from ..state import atomic_write_bytes, atomic_write_json, state_dir

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron: Sunday = 0
CRON_NAME = "aixsmit"
BEGIN, END = "# aixsmit schedules begin: written by 'aixsmit cmd schedule'", "# aixsmit schedules end"

Emit = Callable[[str, str], None]


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
    last: dict = field(default_factory=dict)

    def cron_fields(self) -> str:
        return f"{self.minute} {self.hour} * * {'*' if self.daily else self.day}"

    def describe(self) -> str:
        when = f"{DAYS[self.day].title()} {self.hour:02d}:{self.minute:02d}"
        if self.kind == "system":
            return f"system image every {when}"
        what = "all user file systems" if self.all_user else " ".join(self.filesystems)
        return f"{what}: full {when}, level 1 daily {self.hour:02d}:{self.minute:02d}"

    def next_run(self, now: dt.datetime | None = None) -> dt.datetime:
        now = now or dt.datetime.now()
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
        raise AixsmitError("schedule: --weekly takes DAY@HH:MM, for example sun@02:00", code=2)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise AixsmitError(f"schedule: '{text}' is not a time of day HH:MM", code=2)
    return day, int(m.group(1)), int(m.group(2))


# --- the store ------------------------------------------------------------------------------

def _store() -> Path:
    return state_dir() / "schedules.json"


def load() -> list[Schedule]:
    try:
        data = json.loads(_store().read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise AixsmitError(f"{_store()}: the schedule list cannot be read: {exc}")
    return [Schedule(**s) for s in data.get("schedules", [])]


def save(schedules: list[Schedule]) -> None:
    atomic_write_json(_store(), {"version": 1, "schedules": [asdict(s) for s in schedules]}, 0o600)


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


# --- cron -------------------------------------------------------------------------------

def aixsmit_argv() -> list[str]:
    """How cron starts this very installation."""
    exe = shutil.which("aixsmit")
    here = os.path.join(os.path.dirname(sys.executable), "aixsmit")
    if os.path.exists(here):
        return [here]
    if exe:
        return [exe]
    return [sys.executable, "-m", "aixsmit"]


def run_command(s: Schedule) -> str:
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("AIXSMIT_STATE_DIR", "AIXSMIT_CONFIG") if os.environ.get(k)]
    return " ".join(env + [shlex.join(aixsmit_argv() + ["cmd", "schedule", "run", s.id])])


def cron_text(schedules: list[Schedule], aix: bool = False) -> str:
    lines = [BEGIN]
    if not aix:
        lines += ["SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for s in schedules:
        lines.append(f"# {s.id}: {s.describe()}")
        user = "" if aix else "root "
        lines.append(f"{s.cron_fields()} {user}{run_command(s)} >/dev/null 2>&1")
    lines.append(END)
    return "\n".join(lines) + "\n"


def cron_path() -> Path:
    return Path(os.environ.get("AIXSMIT_CRON_DIR") or "/etc/cron.d") / CRON_NAME


def install_cron(schedules: list[Schedule], host: str) -> str:
    if host == "aix":
        from ..host.common import run

        cur = run(["crontab", "-l"])
        old = cur.stdout if cur.rc == 0 else ""
        keep = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", "", old, flags=re.S)
        text = keep.rstrip("\n") + ("\n" if keep.strip() else "") + (cron_text(schedules, aix=True) if schedules else "")
        tmp = state_dir() / "crontab.new"
        tmp.write_text(text)
        res = run(["crontab", str(tmp)])
        if res.rc != 0:
            raise AixsmitError(f"crontab: {res.message}")
        return "root's crontab"
    path = cron_path()
    if not schedules:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, cron_text(schedules).encode(), 0o644)  # cron ignores files it cannot trust
    return str(path)


# --- running --------------------------------------------------------------------------------

class Locked(AixsmitError):
    pass


def _lock():
    path = state_dir() / "schedule.lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise Locked(f"schedule: another scheduled backup is running (pid {holder}); this run is skipped so that "
                     "runs never overlap.")
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def _stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def chains(directory: Path) -> list[list[Path]]:
    """Level archives grouped by chain (a level 0 and the level 1s after it), oldest first."""
    files = sorted(p for p in directory.glob("*.L[0-9].tar"))
    out: list[list[Path]] = []
    for p in files:
        if p.name.endswith(".L0.tar") or not out:
            out.append([p])
        else:
            out[-1].append(p)
    return out


def prune(items: list[list[Path]], keep: int, emit: Emit) -> None:
    for chain in items[:-keep] if keep > 0 else []:
        for p in chain:
            p.unlink(missing_ok=True)
            emit(f"schedule: removed {p} (older than the last {keep} weeks)", "stdout")


def run_schedule(sid: str, emit: Emit, now: float | None = None) -> int:
    lock = _lock()
    try:
        schedules = load()
        s = find(sid, schedules)
        logdir = state_dir() / "runs" / s.id
        logdir.mkdir(parents=True, exist_ok=True)
        stamp = _stamp(now)
        log_path = logdir / f"{stamp}.log"
        log = open(log_path, "a")

        def tee(line: str, stream: str) -> None:
            log.write(line + "\n")
            log.flush()
            emit(line, stream)

        started = time.time()
        try:
            code, result = _run(s, stamp, now, tee)
        except AixsmitError as exc:
            tee(str(exc), "stderr")
            code, result = exc.code or 1, "FAILED"
        finally:
            log.close()
        s = find(sid, load())
        s.last = {"start": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)), "result": result,
                  "code": code, "log": str(log_path), "seconds": round(time.time() - started, 1)}
        save([s if x.id == sid else x for x in load()])
        return code
    finally:
        lock.close()


def _run(s: Schedule, stamp: str, now: float | None, emit: Emit) -> tuple[int, str]:
    from ..fs.table import System

    system = System(root=s.root)
    dest = Path(s.dest)
    dest.mkdir(parents=True, exist_ok=True)
    if s.kind == "system":
        from ..backup import sysbackup

        image = dest / f"{socket.gethostname()}-{stamp}.mksysb"
        summary = sysbackup.run(system, str(image), emit)
        if summary.code != 0:
            return summary.code, "FAILED"
        images = sorted(dest.glob("*.mksysb"))
        prune([[p] for p in images], s.keep_weeks, emit)
        return 0, "OK" if summary.status == "OK" else "WARN"
    from ..backup.incremental import backup_fs, fs_key
    from ..fs.classify import USER

    weekday = (dt.datetime.fromtimestamp(now or time.time()).weekday() + 1) % 7
    level = 0 if weekday == s.day else 1
    targets = s.filesystems
    if s.all_user:
        from ..fs.table import top

        targets = [e.mount_point for e in top(system.table(), USER)]
    if not targets:
        emit("schedule: no user file system is mounted: nothing to back up.", "stdout")
        return 0, "OK"
    worst = "OK"
    code = 0
    for mp in targets:
        d = dest / fs_key(mp)
        d.mkdir(exist_ok=True)
        try:
            res = backup_fs(system.abs_path(mp), mp, level, str(d / f"{stamp}.L{level}.tar"), True, emit)
        except AixsmitError as exc:
            emit(str(exc), "stderr")
            code, worst = exc.code or 1, "FAILED"
            continue
        final = d / f"{stamp}.L{res.level}.tar"
        if res.level != level:  # promoted: name it for what it is
            os.replace(d / f"{stamp}.L{level}.tar", final)
        if res.level == 0:
            prune(chains(d), s.keep_weeks, emit)
        if res.status == "WARN" and worst == "OK":
            worst = "WARN"
    return code, worst


def restore_chain(s: Schedule, mount_point: str, when: dt.datetime, target: str, emit: Emit) -> list[str]:
    """Restore ``mount_point`` as of ``when``: the last full before it, then the last level 1 of
    that chain before it."""
    from ..backup import archive
    from ..backup.incremental import fs_key

    d = Path(s.dest) / fs_key(mount_point)
    picked: list[Path] = []
    for chain in chains(d) if d.is_dir() else []:
        stamped = [(dt.datetime.strptime(p.name.split(".")[0], "%Y%m%d-%H%M%S"), p) for p in chain]
        if stamped[0][0] <= when:
            picked = [stamped[0][1]] + [p for t, p in stamped[1:] if t <= when][-1:]
    if not picked:
        raise AixsmitError(f"schedule: no backup of {mount_point} from {when:%Y-%m-%d %H:%M} or before in {d}")
    os.makedirs(target, exist_ok=True)
    for p in picked:
        emit(f"Restoring {p.name} into {target}.", "stdout")
        archive.restore(str(p), target, [], False, emit, program="restore")
    return [str(p) for p in picked]
