"""Commands that outlive the terminal.

A command started from COMMAND STATUS runs under a small supervisor process in a session of
its own (``python -m aixsmit.jobs.detached JOBDIR``), so a closed SSH connection or a killed
terminal does not stop it. The supervisor writes the command's output to ``output.log`` and its
state to ``job.json`` in ``STATE/jobs/ID/``; the TUI only reads them, and can stop reading,
exit, and come back: ``aixsmit cmd jobs`` lists the jobs, and the menus reopen COMMAND STATUS
on one, showing its output from the start and following it live.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..state import atomic_write_json, state_dir

RUNNING = "running"
KEEP_DAYS = 7


@dataclass
class JobInfo:
    id: str
    title: str
    command: str  # as shown (F6, smit.script)
    argv: list[str]  # as run
    progress: bool = False
    start: float = 0.0
    end: float = 0.0
    status: str = RUNNING  # running, OK, WARN, FAILED, lost
    rc: int | None = None
    supervisor: int = 0
    pgid: int = 0
    stdout: bool = False
    stderr: bool = False
    dir: str = field(default="", compare=False)

    @property
    def log(self) -> Path:
        return Path(self.dir) / "output.log"

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("dir")
        return d


def jobs_dir() -> Path:
    d = state_dir() / "jobs"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _write(info: JobInfo) -> None:
    atomic_write_json(Path(info.dir) / "job.json", info.to_json())


def read(directory: Path) -> JobInfo | None:
    try:
        data = json.loads((directory / "job.json").read_text())
    except (OSError, ValueError):
        return None
    info = JobInfo(**{k: v for k, v in data.items() if k in JobInfo.__dataclass_fields__})
    info.dir = str(directory)
    if info.status == RUNNING and info.supervisor and not _alive(info.supervisor):
        # The supervisor is gone without writing an end: it was killed (or the machine rebooted).
        info.status = "lost"
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def start(title: str, command: str, argv: list[str], progress: bool = False) -> JobInfo:
    jid = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = jobs_dir() / jid
    d.mkdir(mode=0o700)
    info = JobInfo(jid, title, command, list(argv), progress, start=time.time(), dir=str(d))
    (d / "output.log").touch(mode=0o600)
    _write(info)
    proc = subprocess.Popen([sys.executable, "-m", "aixsmit.jobs.detached", str(d)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    info.supervisor = proc.pid
    # The supervisor writes the file from now on; record its pid only if it has not already.
    for _ in range(200):
        cur = read(d)
        if cur is not None and cur.supervisor:
            return cur
        time.sleep(0.01)
    cur = read(d) or info
    if not cur.supervisor:  # the supervisor has not written yet: record it, so a crash shows
        cur.supervisor = proc.pid
        _write(cur)
    return cur


def mark_seen(info: JobInfo) -> None:
    (Path(info.dir) / "seen").touch()


def seen(info: JobInfo) -> bool:
    return (Path(info.dir) / "seen").exists()


def find(jid: str) -> JobInfo | None:
    return read(jobs_dir() / jid)


def all_jobs() -> list[JobInfo]:
    out = []
    cutoff = time.time() - KEEP_DAYS * 86400
    for d in sorted(jobs_dir().iterdir()):
        info = read(d)
        if info is None:
            continue
        if info.status != RUNNING and info.end and info.end < cutoff:
            continue
        out.append(info)
    return out


def cancel(info: JobInfo, grace: float = 3.0) -> None:
    """TERM the command's process group, then KILL it if it is still there."""
    from .runner import stop_group

    if info.pgid:
        stop_group(info.pgid, grace)


def supervise(directory: str) -> int:
    """The detached supervisor: run the job's command, keep its output and its end."""
    from .progress import BackupProgress
    from .runner import Finished, Job, Output

    for s in (signal.SIGHUP, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    d = Path(directory)
    info = read(d)
    if info is None:
        return 2
    info.supervisor = os.getpid()
    job = Job(info.argv, progress=BackupProgress() if info.progress else None)
    try:
        job.start()
    except OSError as exc:
        with open(info.log, "a") as f:
            f.write(f"{info.argv[0]}: {exc.strerror or exc}\n")
        info.status, info.rc, info.end, info.stderr = "FAILED", 127, time.time(), True
        _write(info)
        return 0
    info.pgid = job.proc.pid
    _write(info)
    with open(info.log, "ab", buffering=0) as out:
        for ev in job.events():
            if isinstance(ev, Output):
                out.write(("\n".join(ev.lines) + "\n").encode("utf-8", "replace"))
                seen = "stdout" if ev.stream == "stdout" else "stderr"
                if not getattr(info, seen):
                    setattr(info, seen, True)
                    _write(info)
            elif isinstance(ev, Finished):
                info.status, info.rc, info.end = ev.status, ev.returncode, time.time()
                _write(info)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1]))
