"""What starts scheduled runs: cron (``/etc/cron.d/aixsmit``, AIX: root's crontab) or systemd
timers (``aixsmit-ID.timer`` and ``aixsmit-ID.service``), detected honestly.

* systemd is in use where it is the init system (``/run/systemd/system`` exists, the test of
  ``sd_booted(3)``): a timer with ``Persistent=true`` runs a run missed while the machine was
  off at the next boot, which cron cannot do.
* otherwise cron; whether a cron daemon runs is looked up in ``/proc`` and said, because a
  cron file nobody reads runs nothing.

``AIXSMIT_SCHEDULER`` (``cron`` or ``systemd``) overrides the choice; ``AIXSMIT_CRON_DIR``
and ``AIXSMIT_UNIT_DIR`` name other folders for the files (tests: nothing is then installed
on the host, and ``systemctl`` is not called).

Values reach these files only through :func:`cron_quote` (crontab(5): a ``%`` ends the
command unless escaped, a newline cannot be written at all) and :func:`unit_quote`
(systemd.syntax(7) and systemd.unit(5): quotes and backslashes escaped, ``%`` specifiers
doubled, ``$`` doubled); text with a control character is refused before it gets there.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AixsmitError
from ..state import atomic_write_bytes

if TYPE_CHECKING:
    from .schedule import Schedule

CRON_NAME = "aixsmit"
BEGIN, END = "# aixsmit schedules begin: written by 'aixsmit cmd schedule'", "# aixsmit schedules end"
UNIT_MARK = "# Written by 'aixsmit cmd schedule'; 'aixsmit cmd schedule remove' removes it."
CRON_DAEMONS = ("cron", "crond", "cronie", "fcron", "dcron", "bcron-sched", "systemd-cron")
ENV_PASSED = ("AIXSMIT_STATE_DIR", "AIXSMIT_CONFIG")


@dataclass(frozen=True)
class Scheduler:
    kind: str  # cron | crontab (AIX) | systemd
    where: str  # the file or folder the schedules are written to
    running: bool  # something that reads ``where`` is running
    note: str  # which one, for the operator
    problem: str = ""  # why nothing would run the schedules, when nothing would


def control_free(what: str, value: str) -> str:
    """``value`` unchanged, or a one-line error when it holds a control character (a newline
    in a file system name would become a line of its own in a cron file or a unit)."""
    bad = [c for c in value if not c.isprintable()]
    if bad:
        raise AixsmitError(f"schedule: {what} {value!r} holds a control character ({bad[0]!r}); refused.", code=2)
    return value


def cron_quote(arg: str) -> str:
    """One argument for the command field of a cron line: shell-quoted, ``%`` escaped."""
    control_free("the argument", arg)
    return shlex.quote(arg).replace("%", "\\%")


def unit_quote(arg: str) -> str:
    """One argument of ``ExecStart=`` or one assignment of ``Environment=``, double-quoted."""
    control_free("the argument", arg)
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def aixsmit_argv() -> list[str]:
    """How cron or systemd starts this very installation."""
    here = os.path.join(os.path.dirname(sys.executable), "aixsmit")
    if os.path.exists(here):
        return [here]
    exe = shutil.which("aixsmit")
    if exe:
        return [exe]
    return [sys.executable, "-m", "aixsmit"]


def run_argv(sid: str) -> list[str]:
    return aixsmit_argv() + ["cmd", "schedule", "run", "--quiet", sid]


def passed_env() -> list[tuple[str, str]]:
    return [(k, os.environ[k]) for k in ENV_PASSED if os.environ.get(k)]


# --- detection ------------------------------------------------------------------------------

def _cron_running() -> str | None:
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm in CRON_DAEMONS or comm == "busybox" and _busybox_crond(pid):
                return comm
    return None


def _busybox_crond(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"crond" in f.read()
    except OSError:
        return False


def systemd_booted() -> bool:
    return os.path.isdir("/run/systemd/system")


def cron_path() -> Path:
    return Path(os.environ.get("AIXSMIT_CRON_DIR") or "/etc/cron.d") / CRON_NAME


def unit_dir() -> Path:
    return Path(os.environ.get("AIXSMIT_UNIT_DIR") or "/etc/systemd/system")


def _choice_path() -> Path:
    from ..state import state_dir

    return state_dir() / "scheduler"


def chosen() -> str | None:
    """The scheduler the operator chose with ``schedule install --via``, if any."""
    try:
        value = _choice_path().read_text().strip()
    except OSError:
        return None
    return value if value in ("cron", "systemd") else None


def choose(via: str) -> None:
    atomic_write_bytes(_choice_path(), f"{via}\n".encode())


def detect(host: str, via: str | None = None) -> Scheduler:
    """The scheduler in use here: ``via``, else ``AIXSMIT_SCHEDULER``, else the operator's
    choice (``schedule install --via``), else systemd where it is the init system, else cron."""
    if host == "aix":
        return Scheduler("crontab", "root's crontab", True, "cron (root's crontab)")
    via = via or os.environ.get("AIXSMIT_SCHEDULER") or chosen() or ("systemd" if systemd_booted() else "cron")
    if via == "systemd":
        booted = systemd_booted()
        return Scheduler("systemd", str(unit_dir()), booted, f"systemd timers in {unit_dir()}",
                         "" if booted else "systemd is not this machine's init system: nothing runs these timers here.")
    if via != "cron":
        raise AixsmitError(f"schedule: AIXSMIT_SCHEDULER is '{via}'; give cron or systemd", code=2)
    daemon = _cron_running()
    return Scheduler("cron", str(cron_path()), daemon is not None,
                     f"cron ({cron_path()}" + (f", read by {daemon})" if daemon else ")"),
                     "" if daemon else "no cron daemon is running on this machine: nothing runs these schedules "
                                       "until one is started.")


# --- cron -----------------------------------------------------------------------------------

def cron_line(s: Schedule, aix: bool = False) -> str:
    env = [f"{k}={cron_quote(v)}" for k, v in passed_env()]
    command = " ".join(env + [cron_quote(a) for a in run_argv(s.id)])
    return f"{s.cron_fields()} {'' if aix else 'root '}{command}"


def cron_text(schedules: list[Schedule], aix: bool = False) -> str:
    lines = [BEGIN]
    if not aix:
        lines += ["SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for s in schedules:
        lines.append(f"# {s.id}: {control_free('the description', s.describe())}")
        lines.append(cron_line(s, aix))
    lines.append(END)
    return "\n".join(lines) + "\n"


def _install_crontab(schedules: list[Schedule]) -> None:
    from ..host.common import run
    from ..state import state_dir

    cur = run(["crontab", "-l"])
    old = cur.stdout if cur.rc == 0 else ""
    keep = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", "", old, flags=re.S)
    text = keep.rstrip("\n") + ("\n" if keep.strip() else "") + (cron_text(schedules, aix=True) if schedules else "")
    tmp = state_dir() / "crontab.new"
    atomic_write_bytes(tmp, text.encode())
    res = run(["crontab", str(tmp)])
    if res.rc != 0:
        raise AixsmitError(f"crontab: {res.message}")


def _install_cron_file(schedules: list[Schedule]) -> None:
    path = cron_path()
    if not schedules:
        path.unlink(missing_ok=True)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, cron_text(schedules).encode(), 0o644)  # cron ignores files it cannot trust
    except OSError as exc:
        raise AixsmitError(f"schedule: cannot write {path}: {exc.strerror}; cron would not see the schedule.")


# --- systemd --------------------------------------------------------------------------------

def on_calendar(s: Schedule) -> str:
    from .schedule import DAYS

    day = "" if s.daily else DAYS[s.day].title() + " "
    return f"{day}*-*-* {s.hour:02d}:{s.minute:02d}:00"


def unit_names(sid: str) -> tuple[str, str]:
    return f"aixsmit-{sid}.service", f"aixsmit-{sid}.timer"


def unit_texts(s: Schedule) -> dict[str, str]:
    """The service and timer of one schedule."""
    service, timer = unit_names(s.id)
    desc = control_free("the description", s.describe()).replace("%", "%%")
    env = "".join(f"Environment={unit_quote(f'{k}={v}')}\n" for k, v in passed_env())
    return {
        service: f"{UNIT_MARK}\n[Unit]\nDescription=aixsmit {s.id}: {desc}\n"
                 f"\n[Service]\nType=oneshot\n{env}ExecStart={' '.join(unit_quote(a) for a in run_argv(s.id))}\n",
        timer: f"{UNIT_MARK}\n[Unit]\nDescription=aixsmit {s.id}: {desc}\n"
               f"\n[Timer]\nOnCalendar={on_calendar(s)}\nPersistent=true\nUnit={service}\n"
               f"\n[Install]\nWantedBy=timers.target\n",
    }


def _ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.readline().rstrip(b"\n") == UNIT_MARK.encode()
    except OSError:
        return False


def _install_units(schedules: list[Schedule]) -> None:
    from ..host.common import run

    d = unit_dir()
    live = not os.environ.get("AIXSMIT_UNIT_DIR") and systemd_booted()
    wanted: dict[str, str] = {}
    for s in schedules:
        wanted.update(unit_texts(s))
    try:
        d.mkdir(parents=True, exist_ok=True)
        stale = [p for p in d.glob("aixsmit-*.*") if p.name not in wanted and _ours(p)]
        for name, text in wanted.items():
            atomic_write_bytes(d / name, text.encode(), 0o644)
    except OSError as exc:
        raise AixsmitError(f"schedule: cannot write the units in {d}: {exc.strerror}; systemd would not see the "
                           "schedule.")
    for p in stale:
        if live and p.suffix == ".timer":
            run(["systemctl", "disable", "--now", p.name])
        p.unlink(missing_ok=True)
    if live:
        res = run(["systemctl", "daemon-reload"])
        if res.rc != 0:
            raise AixsmitError(f"systemctl daemon-reload: {res.message}")
        for s in schedules:
            res = run(["systemctl", "enable", "--now", unit_names(s.id)[1]])
            if res.rc != 0:
                raise AixsmitError(f"systemctl enable {unit_names(s.id)[1]}: {res.message}")


def install(schedules: list[Schedule], sched: Scheduler) -> None:
    """Write every schedule for ``sched``, and remove them from the other kind's files."""
    if sched.kind == "crontab":
        _install_crontab(schedules)
        return
    if sched.kind == "systemd":
        _install_units(schedules)
        if cron_path().exists():
            _install_cron_file([])
    else:
        _install_cron_file(schedules)
        if any(_ours(p) for p in unit_dir().glob("aixsmit-*.*")) if unit_dir().is_dir() else False:
            _install_units([])


# --- daylight saving ------------------------------------------------------------------------

def local_zone():
    """The local zone as a ``zoneinfo`` zone (``TZ``, else ``/etc/localtime``), or None."""
    import zoneinfo

    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return zoneinfo.ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


def dst_clashes(hour: int, minute: int, zone, start: dt.datetime | None = None,
                days: int = 366) -> list[tuple[dt.date, str]]:
    """The days of the next year on which ``hour:minute`` local time does not exist (a clock
    moved forward: cron skips or shifts the run) or happens twice (moved back: cron may run
    it twice), from the zone's real transitions (found day by day, then to the minute)."""
    if zone is None:
        return []
    utc = dt.timezone.utc
    t = (start or dt.datetime.now(utc)).astimezone(utc).replace(second=0, microsecond=0)
    offset = lambda at: at.astimezone(zone).utcoffset()  # noqa: E731
    out: list[tuple[dt.date, str]] = []
    prev = offset(t)
    for _ in range(days):
        t2 = t + dt.timedelta(days=1)
        off = offset(t2)
        if off != prev:
            lo, hi = t, t2  # the change happens in (lo, hi]
            while hi - lo > dt.timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                lo, hi = (mid, hi) if offset(mid) == prev else (lo, mid)
            # The local wall times between (hi + prev) and (hi + off) are skipped or repeated.
            a, b = sorted((hi + prev, hi + off))
            a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
            wall = dt.datetime.combine(a.date(), dt.time(hour, minute))
            for w in (wall, wall + dt.timedelta(days=1)):
                if a <= w < b:
                    out.append((w.date(), "skipped" if off > prev else "repeated"))
            prev = off
        t = t2
    return out
