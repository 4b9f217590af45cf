"""Commands that outlive the terminal.

A command started from COMMAND STATUS runs under a small supervisor process in a session of
its own (:mod:`aixsmit.jobs.supervise`), so a closed SSH connection or a killed terminal does
not stop it. In ``STATE/jobs/ID/`` the menus write ``job.json`` (what runs, and when it
started); the supervisor appends the command's output to ``output.log`` and keeps its own
state in ``run`` (process group, output seen, the end); :func:`read` puts the two together.
The TUI only reads them, and can stop reading, exit, and come back: ``aixsmit cmd jobs`` lists the jobs, and the menus reopen COMMAND STATUS
on one, showing its output from the start and following it live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..safefile import open_own, write_file
from ..state import atomic_write_json, state_dir
from .supervise import read_state

RUNNING = "running"
KEEP_DAYS = 7  # a finished job is listed, and kept, this long
KEEP_MAX = 100  # and only the newest this many finished jobs are kept (their output is in smit.log too)


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
    # A job's state says how it is going; it is not worth a wait for the disk.
    atomic_write_json(Path(info.dir) / "job.json", info.to_json(), sync=False)


def read(directory: Path) -> JobInfo | None:
    try:
        data = json.loads((directory / "job.json").read_text())
    except (OSError, ValueError):
        return None
    info = JobInfo(**{k: v for k, v in data.items() if k in JobInfo.__dataclass_fields__})
    info.dir = str(directory)
    return refresh(info)


def refresh(info: JobInfo) -> JobInfo:
    """``info`` with what the supervisor has written since: its ``run`` state, and whether it
    is still alive. job.json, which only the menus write, is not read again (COMMAND STATUS
    asks this many times a second)."""
    info = replace(info)
    directory = Path(info.dir)
    run = read_state(info.dir)
    try:
        if run:
            info.supervisor, info.pgid = int(run["supervisor"]), int(run["pgid"])
            info.stdout, info.stderr = run["stdout"] == "1", run["stderr"] == "1"
        if "status" in run:
            info.status, info.rc, info.end = run["status"], int(run["rc"]), float(run["end"])
    except (KeyError, ValueError):
        pass  # a file from another version: the job shows as job.json has it
    if info.status == RUNNING and not info.supervisor:
        try:
            info.supervisor = int((directory / "spawned").read_text())
        except (OSError, ValueError):
            pass
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


# The supervisor starts without site-packages or the rest of aixsmit: only the package's
# parent directory on the path (jobs/supervise.py needs only osutil.py besides). It leaves with
# os._exit once the job's end is written: it has no buffered output, and the interpreter's
# clean-up would keep a follower waiting for its exit 2-3 ms longer.
_BOOT = ("import os, sys; sys.path.insert(0, sys.argv[1]); from aixsmit.jobs.supervise import main; "
         "os._exit(main(sys.argv[2], sys.argv[3] == '1', sys.argv[4:]))")
# A spare supervisor: started ahead, it waits on its standard input for the job to run.
_BOOT_SPARE = ("import os, sys; sys.path.insert(0, sys.argv[1]); from aixsmit.jobs.supervise import spare; "
               "os._exit(spare())")

_spare: tuple[subprocess.Popen, int] | None = None
_spare_lock = threading.Lock()


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


def _spawn(argv: list[str], stdin) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-S", "-c", *argv], stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def prepare() -> None:
    """Have a supervisor ready, so the next :func:`start` does not wait for one to start up
    (12-20 ms of Python). It lives in its own session and leaves when this process closes the
    pipe it waits on (:func:`release`, or this process ending in any way)."""
    global _spare
    with _spare_lock:
        if _spare is not None and _spare[0].poll() is None:
            return
        r, w = os.pipe()
        try:
            proc = _spawn([_BOOT_SPARE, _package_parent()], r)
        except OSError:
            os.close(w)
            return
        finally:
            os.close(r)
        _spare = (proc, w)


def release() -> None:
    """Let the spare supervisor go (it reads an empty job and leaves)."""
    global _spare
    with _spare_lock:
        if _spare is not None:
            os.close(_spare[1])
            _spare = None


def _take_spare() -> tuple[subprocess.Popen, int] | None:
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None and spare[0].poll() is not None:
        os.close(spare[1])
        return None
    return spare


def start(title: str, command: str, argv: list[str], progress: bool = False) -> JobInfo:
    """Start ``argv`` under a detached supervisor and return at once (no waiting for it)."""
    jid = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = jobs_dir() / jid
    d.mkdir(mode=0o700)
    info = JobInfo(jid, title, command, list(argv), progress, start=time.time(), dir=str(d))
    os.close(open_own(str(d / "output.log")))
    _write(info)
    job = [str(d), "1" if progress else "0", *info.argv]
    spare = _take_spare()
    proc = None
    if spare is not None:
        proc, w = spare
        try:
            view = memoryview(b"\0".join(os.fsencode(a) for a in job))
            while view:
                view = view[os.write(w, view):]
        except OSError:
            proc = None
        finally:
            os.close(w)
    if proc is None:
        proc = _spawn([_BOOT, _package_parent(), *job], subprocess.DEVNULL)
    info.supervisor = proc.pid
    # Who to ask whether the job is still alive, until the supervisor has written its state.
    write_file(str(d / "spawned"), str(proc.pid).encode(), sync=False)
    return info


def mark_seen(info: JobInfo) -> None:
    os.close(open_own(str(Path(info.dir) / "seen")))


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


def prune(now: float | None = None) -> int:
    """Remove the folders of finished jobs that ended more than KEEP_DAYS ago, and of all but
    the newest KEEP_MAX jobs: a job's output log may be large, and the whole output is in
    smit.log as well. A job still running stays. Only the folders that may go are read (their
    names begin with the start time). Returns how many went."""
    from ..osutil import remove_tree

    now = time.time() if now is None else now
    cutoff = now - KEEP_DAYS * 86400
    started_before = time.strftime("%Y%m%d-%H%M%S", time.localtime(cutoff))
    try:
        names = sorted(e.name for e in os.scandir(jobs_dir()) if e.is_dir(follow_symlinks=False))
    except OSError:
        return 0
    removed = 0
    for i, name in enumerate(reversed(names)):  # newest first
        if i < KEEP_MAX and name >= started_before:
            continue  # started within the week: it cannot have ended before it
        info = read(jobs_dir() / name)
        if info is not None and (info.status == RUNNING or (i < KEEP_MAX and info.end >= cutoff)):
            continue
        remove_tree(str(jobs_dir() / name))
        removed += 1
    return removed


def cancel(info: JobInfo, grace: float = 3.0) -> None:
    """TERM the command's process group, then KILL it if it is still there."""
    from .runner import stop_group

    if info.pgid:
        stop_group(info.pgid, grace)
