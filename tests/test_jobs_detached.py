"""Detached jobs: the supervisor that runs a command for COMMAND STATUS and outlives the terminal.

What an operator sees of a job (its log, stdout/stderr yes/no, OK/WARN/FAILED) must be right
whatever the command does: print on both streams, fail, print AIX's 0512 messages, not exist,
be cancelled, or lose its supervisor.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from aixsmit.jobs import detached


def wait(info: detached.JobInfo, timeout: float = 20.0) -> detached.JobInfo:
    end = time.monotonic() + timeout
    while True:
        cur = detached.read(Path(info.dir))
        if cur.status != detached.RUNNING or time.monotonic() > end:
            return cur
        time.sleep(0.01)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_both_streams_whole_lines_and_flags():
    # stdout's line is cut by a write to stderr in between: the log still has whole lines.
    code = ("import os, sys, time\nos.write(1, b'abc')\ntime.sleep(0.1)\nos.write(2, b'warning: careful\\n')\n"
            "time.sleep(0.1)\nos.write(1, b'def\\nlast line without newline')")
    info = wait(detached.start("t", "t", py(code)))
    assert (info.status, info.rc, info.stdout, info.stderr) == ("OK", 0, True, True)
    assert info.log.read_bytes().split(b"\n") == [b"warning: careful", b"abcdef", b"last line without newline"]
    assert info.end >= info.start > 0 and info.pgid and info.supervisor


def test_output_of_a_quiet_command_reaches_the_log_while_it_runs():
    # The supervisor waits up to 40 ms between reads of a quiet command's pipes.
    code = "import os, time\ntime.sleep(0.5)\nos.write(1, b'first\\n')\ntime.sleep(3)\nos.write(1, b'second\\n')"
    info = detached.start("t", "t", py(code))
    end = time.monotonic() + 2.5
    while info.log.read_bytes() != b"first\n" and time.monotonic() < end:
        time.sleep(0.01)
    assert info.log.read_bytes() == b"first\n"
    assert detached.read(Path(info.dir)).status == detached.RUNNING
    assert wait(info).log.read_bytes() == b"first\nsecond\n"


def test_more_output_at_once_than_a_pipe_holds():
    # 8 MB in one write: the pipe (1 MB at most) is emptied as fast as it fills.
    info = wait(detached.start("t", "t", py("import os, sys\nsys.stdout.write('x' * 99 + '\\n') or None\n"
                                            "os.write(1, (b'y' * 1023 + b'\\n') * 8192)")))
    data = info.log.read_bytes()
    assert info.status == "OK" and len(data) == 100 + 8 * 1024 * 1024
    assert data.count(b"\n") == 8193


def test_a_steady_writer_is_not_held_up_by_its_pipe():
    """A command writing 4 MB in 8 KB blocks (about 70 MB/s here) runs under the supervisor
    about as fast as into /dev/null: the supervisor empties its pipe before it fills."""
    import subprocess

    code = ("import os, sys, time\nout = os.fdopen(1, 'w', buffering=8192)\nt = time.perf_counter()\n"
            "for i in range(200000): out.write(f'line {i} of output\\n')\nout.flush()\n"
            "os.write(2, f'{time.perf_counter() - t:.4f}\\n'.encode())")
    alone = min(float(subprocess.run(py(code), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     check=True).stderr) for _ in range(3))
    supervised = []
    for _ in range(3):
        info = wait(detached.start("t", "t", py(code)))
        assert info.status == "OK"
        # The time, on stderr, may come before the end of stdout in the log (stdout and stderr
        # are read in turns): it is the one line that is not output.
        supervised.append(float(next(l for l in info.log.read_bytes().splitlines() if not l.startswith(b"line "))))
    assert min(supervised) < 2 * alone + 0.02, f"{min(supervised):.3f} s supervised, {alone:.3f} s alone"


def test_reads_are_paced_by_what_came_since_the_last_wait():
    from aixsmit.jobs.supervise import Pace

    mb = 1 << 20
    pace = Pace(mb, now=0.0)
    # Starting up, quiet: read every 5 ms for the first 100 ms.
    for i in range(1, 20):
        pace.read(0)
        assert pace.next_wait(i * 0.005) == 0.005
    # A pipe found half full is read again at once; that read finding nothing is no quiet:
    # the next wait is short enough for a quarter of the pipe to come at the rate seen.
    pace.read(mb)
    pace.read(0)
    assert pace.next_wait(0.1) <= 0.005
    pace.read(mb // 2)
    assert pace.next_wait(0.105) == pytest.approx(mb / 4 / (mb / 2 / 0.005))
    # Quiet after that output: 5 ms for 100 ms, then longer and longer, up to 40 ms.
    seen = []
    t = 0.105
    while t < 0.5:
        pace.read(0)
        t += pace.wait
        seen.append((t, pace.next_wait(t)))
    assert all(w == 0.005 for at, w in seen if at < 0.205)
    waits = [w for _, w in seen]
    assert waits == sorted(waits) and waits[-1] == 0.04


def test_output_after_the_command_ends_from_what_it_left_running():
    # The command starts a child that keeps its stdout and writes after the command has exited:
    # the job ends when the last writer closes the pipe, with every line in the log.
    code = ("import subprocess, sys\nprint('parent', flush=True)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.5); print(\"child\")'])")
    info = wait(detached.start("t", "t", py(code)))
    assert info.status == "OK"
    assert info.log.read_bytes() == b"parent\nchild\n"


def test_supervisor_without_pidfd(tmp_path, monkeypatch):
    # Kernels before 5.3 have no pidfd: the supervisor then sleeps between reads and asks
    # waitid whether the command has ended. Run in this process, with pidfd_open failing.
    from aixsmit.jobs import supervise

    def no_pidfd(pid, flags=0):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    code = "import os, time\nos.write(1, b'one\\n')\ntime.sleep(0.3)\nos.write(2, b'two\\n')\nraise SystemExit(4)"
    assert supervise.main(str(tmp_path), False, py(code)) == 0
    state = supervise.read_state(str(tmp_path))
    assert (state["status"], state["rc"], state["stdout"], state["stderr"]) == ("FAILED", "4", "1", "1")
    assert (tmp_path / "output.log").read_bytes() == b"one\ntwo\n"


def test_stderr_only_and_failure():
    info = wait(detached.start("t", "t", py("import sys\nsys.stderr.write('no such volume group\\n')\nsys.exit(3)")))
    assert (info.status, info.rc, info.stdout, info.stderr) == ("FAILED", 3, False, True)


def test_missing_command_is_a_failure_with_a_reason():
    info = wait(detached.start("t", "t", ["/nonexistent/mksysb", "-i"]))
    assert (info.status, info.rc, info.stderr) == ("FAILED", 127, True)
    assert b"/nonexistent/mksysb: No such file or directory" in info.log.read_bytes()


@pytest.mark.parametrize("last, status", [
    ("0512-038 mksysb: Backup Completed Successfully.", "OK"),
    ("0512-003 mksysb may not have been able to archive some files.", "WARN"),
    # aix-smit.md §3.5: a reported failure is FAILED even if the exit status says 0.
    ("0512-005 mksysb: Backup Completed.", "FAILED"),
])
def test_backup_messages_decide_the_outcome(last, status):
    code = f"print('Backing up 10 files')\nprint('10 of 10 files backed up (100%)')\nprint({last!r})"
    info = wait(detached.start("t", "t", py(code), progress=True))
    assert (info.status, info.rc) == (status, 0)


def test_cancel_stops_the_group_and_lost_supervisor_shows():
    info = detached.start("t", "t", py("import subprocess\nsubprocess.run(['sleep', '60'])"))
    end = time.monotonic() + 10
    while not detached.read(Path(info.dir)).pgid and time.monotonic() < end:
        time.sleep(0.01)
    detached.cancel(detached.read(Path(info.dir)), grace=2)
    done = wait(info)
    assert done.status == "FAILED" and done.rc == -signal.SIGTERM

    info = detached.start("t", "t", ["sleep", "60"])
    end = time.monotonic() + 10
    while not (cur := detached.read(Path(info.dir))).pgid and time.monotonic() < end:
        time.sleep(0.01)
    os.kill(cur.supervisor, signal.SIGKILL)
    assert wait(info).status == "lost"
    os.killpg(cur.pgid, signal.SIGKILL)


def test_hangup_does_not_reach_the_command():
    info = detached.start("t", "t", py("import time\ntime.sleep(0.5)\nprint('still here')"))
    end = time.monotonic() + 10
    while not (cur := detached.read(Path(info.dir))).pgid and time.monotonic() < end:
        time.sleep(0.01)
    os.killpg(cur.pgid, signal.SIGHUP)  # what a closed terminal sends
    os.kill(cur.supervisor, signal.SIGHUP)
    done = wait(info)
    assert (done.status, done.log.read_text()) == ("OK", "still here\n")


def test_a_spare_supervisor_runs_the_next_job_and_leaves_when_released():
    detached.prepare()
    spare = detached._spare[0]
    info = detached.start("t", "t", py("print('from the spare')"))
    assert info.supervisor == spare.pid  # taken, not started anew
    done = wait(info)
    assert (done.status, done.log.read_text()) == ("OK", "from the spare\n")
    spare.wait(timeout=10)

    detached.prepare()
    idle = detached._spare[0]
    detached.release()  # the menus leave: the unused spare goes too
    assert idle.wait(timeout=10) == 0
    info = wait(detached.start("t", "t", py("print('cold')")))  # no spare: one is started
    assert (info.status, info.log.read_text()) == ("OK", "cold\n")


def _job(name: str, start: float, end: float | None, running: bool = False) -> Path:
    """A job folder as the menus and the supervisor leave it: ended at ``end``, or running."""
    d = detached.jobs_dir() / name
    d.mkdir()
    info = detached.JobInfo(name, "t", "t", ["t"], start=start, dir=str(d))
    (d / "job.json").write_text(__import__("json").dumps(info.to_json()))
    run = {"supervisor": os.getpid(), "pgid": os.getpid(), "stdout": 1, "stderr": 0}
    if not running:
        run.update(status="OK", rc=0, end=repr(end))
    (d / "run").write_text("".join(f"{k} {v}\n" for k, v in run.items()))
    (d / "output.log").write_bytes(b"out\n")
    return d


def test_prune_keeps_a_week_and_the_newest_jobs(monkeypatch):
    monkeypatch.setattr(detached, "KEEP_MAX", 4)
    now = time.time()
    day = 86400
    name = lambda t, n: time.strftime("%Y%m%d-%H%M%S-", time.localtime(t)) + n  # noqa: E731
    old_done = _job(name(now - 9 * day, "a"), now - 9 * day, now - 9 * day + 60)
    old_running = _job(name(now - 9 * day, "b"), now - 9 * day, None, running=True)
    # Ended an hour ago, but past the newest four (the next test keeps one like it).
    long_backup = _job(name(now - 8 * day, "c"), now - 8 * day, now - 3600)
    broken = detached.jobs_dir() / name(now - 10 * day, "d")
    broken.mkdir()
    recent = [_job(name(now - 3600 + i, f"r{i}"), now - 3600 + i, now - 3000 + i) for i in range(5)]
    assert detached.prune(now) == 4
    left = {p.name for p in detached.jobs_dir().iterdir()}
    # The newest four are kept; past them, only a job still running.
    assert left == {old_running.name} | {d.name for d in recent[1:]}
    assert not old_done.exists() and not long_backup.exists() and not broken.exists() and not recent[0].exists()
    assert [j.id for j in detached.all_jobs()] == sorted(left)
    assert detached.prune(now) == 0


def test_prune_keeps_a_long_job_that_ended_this_week(monkeypatch):
    now = time.time()
    started = now - 8 * 86400
    d = _job(time.strftime("%Y%m%d-%H%M%S-", time.localtime(started)) + "c", started, now - 3600)
    assert detached.prune(now) == 0 and d.exists()
    assert detached.prune(now + 7 * 86400) == 1 and not d.exists()
