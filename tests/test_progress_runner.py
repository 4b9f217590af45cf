"""The progress grammar (both AIX wordings) and the job runner (events, status, cancel, speed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from aixsmit.jobs.progress import BackupProgress
from aixsmit.jobs.runner import FAILED, OK, WARN, Finished, Job, Output, Progress, run

from conftest import FIXTURES


def feed_all(text: str) -> BackupProgress:
    p = BackupProgress()
    for line in text.splitlines():
        p.feed(line)
    return p


def test_modern_mksysb_capture():
    # aix-smit.md §3.5: "Creating list of files to back up " with the trailing space, dots, "backed up".
    p = feed_all((FIXTURES / "aix" / "mksysb.out").read_text())
    assert (p.files_done, p.files_total, p.percent, p.succeeded, p.program) == (80239, 80239, 100.0, True, "mksysb")


def test_nim_savevg_capture_counter_after_dots():
    p = BackupProgress()
    seen = []
    for line in (FIXTURES / "aix" / "savevg-nim.out").read_text().splitlines():
        if p.feed(line):
            seen.append((p.files_done, p.files_total, p.percent))
    assert seen[:3] == [(0, 102488, 0.0), (59969, 102488, 58.0), (86430, 102488, 84.0)]
    assert p.succeeded is True and p.program == "savevg" and p.fraction == 1.0


@pytest.mark.parametrize("line", [
    "0512-005 mksysb: Backup Completed.",
    "0512-007 mksysb: Abnormal program termination.",
    "0512-006 mksysb: Backup device or file name must start with a '/'.",
    "mksysb: 0512-017 mksysb: Cannot write to the device /dev/rmt0.",
])
def test_failure_messages(line):
    p = BackupProgress()
    assert p.feed(line) and p.succeeded is False


def test_warning_is_not_failure():
    p = feed_all("Backing up 10 files\n0512-003 mksysb may not have been able to archive some files.\n")
    assert p.warning and p.succeeded is None


def _events(argv, **kw):
    return list(run(argv, **kw))


def test_runner_tags_streams_and_ends_ok():
    evs = _events([sys.executable, "-c", "import sys; print('out1'); print('err1', file=sys.stderr); print('out2')"])
    out = [l for e in evs if isinstance(e, Output) and e.stream == "stdout" for l in e.lines]
    err = [l for e in evs if isinstance(e, Output) and e.stream == "stderr" for l in e.lines]
    assert out == ["out1", "out2"] and err == ["err1"]
    assert isinstance(evs[-1], Finished) and evs[-1].status == OK and evs[-1].returncode == 0


def test_runner_status_warn_and_failed():
    ok_but_warned = "print('Backing up 2 files'); print('0512-003 mksysb may not have been able to archive some files.')"
    evs = _events([sys.executable, "-c", ok_but_warned], progress=BackupProgress())
    assert evs[-1].status == WARN
    assert any(isinstance(e, Progress) and e.files_total == 2 for e in evs)
    evs = _events([sys.executable, "-c", "import sys; print('0512-038 mksysb: Backup Completed Successfully.'); sys.exit(3)"],
                  progress=BackupProgress())
    assert evs[-1].status == FAILED and evs[-1].returncode == 3


def test_runner_strips_escapes_and_carriage_returns():
    evs = _events([sys.executable, "-c", r"print('\x1b[31mred\x1b[0m'); print('10%\r20%\r30%')"])
    lines = [l for e in evs if isinstance(e, Output) for l in e.lines]
    assert lines == ["red", "30%"]


def test_cancel_kills_the_whole_group():
    # A shell that starts a grandchild ignoring nothing: both must go.
    job = Job(["sh", "-c", "sleep 600 & echo $!; wait"], grace=1.0)
    job.start()
    it = job.events()
    first = next(it)
    grandchild = int(first.lines[0])
    t = time.monotonic()
    job.cancel()
    rest = list(it)
    assert time.monotonic() - t < 5
    assert rest[-1].status == FAILED
    time.sleep(0.2)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped
    except FileNotFoundError:
        return False


def test_cancel_escalates_to_kill():
    job = Job([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('x', flush=True); time.sleep(600)"],
              grace=0.5)
    job.start()
    it = job.events()
    next(it)
    t = time.monotonic()
    job.cancel()
    assert list(it)[-1].returncode == -9
    assert time.monotonic() - t < 5


def test_runner_keeps_up_with_200k_lines_a_second():
    n = 400_000
    argv = [sys.executable, "-c", f"import sys; sys.stdout.write(''.join('%d of {n} files backed up (1%%)\\n' % i for i in range({n})))"]
    # The producer alone, for reference, then through the runner with the progress parser on.
    t = time.perf_counter()
    import subprocess

    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    alone = time.perf_counter() - t
    t = time.perf_counter()
    count = 0
    for ev in run(argv, progress=BackupProgress()):
        if isinstance(ev, Output):
            count += len(ev.lines)
    took = time.perf_counter() - t
    assert count == n
    rate = n / max(took - alone, 1e-6)
    assert rate > 200_000, f"{rate:.0f} lines/s through the runner"


def test_list_feed_counts_the_names_the_reader_has_taken(tmp_path):
    """mksysb's progress without a line per file: what was fed less what waits in the pipe."""
    from aixsmit.backup.streams import ListFeed

    names = [b"./f%07d\0" % i for i in range(20_000)]  # 11 bytes each
    take = 7_000
    # The reader takes exactly `take` names, then waits (as tar does on a big file).
    reader = [sys.executable, "-c", "import os, time\nn = %d\nwhile n:\n    n -= len(os.read(0, n))\ntime.sleep(60)" % (take * 11)]
    feed = ListFeed(str(tmp_path / "list"))
    proc = subprocess.Popen(reader, stdin=feed.read_end)
    try:
        feed.start()
        for i in range(0, len(names), 500):
            feed.add(b"".join(names[i:i + 500]), 500)
        feed.finish()
        deadline = time.monotonic() + 10
        while feed.taken() < take and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        assert feed.taken() == take
        assert feed.names == len(names)
    finally:
        proc.kill()
        proc.wait()
        feed.stop()  # the pump, stuck on a full pipe, ends too
    assert not feed.thread.is_alive()


@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "prctl-in-child"])
def test_a_job_that_must_not_outlive_us_dies_with_us(setpriv):
    """die_with_parent: a tar left running after aixsmit was killed would go on writing a
    partial image. Both ways (setpriv --pdeathsig, or prctl in the child) must work."""
    if setpriv and not shutil.which("setpriv"):
        pytest.skip("util-linux setpriv is not installed")
    code = (
        "import sys, time\n"
        "from aixsmit import osutil\n"
        "from aixsmit.jobs import runner\n"
        f"osutil._setpriv = {'False' if setpriv else 'None'}\n"
        "job = runner.Job(['sleep', '60'], die_with_parent=True)\n"
        "job.start()\n"
        "print(job.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # setpriv runs sleep in its own place (its next exec)
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if f.read().split(b"\0")[:2] == [b"sleep", b"60"]:
                break
        time.sleep(0.01)
    else:
        pytest.fail("the job never became 'sleep 60'")
    parent.kill()
    parent.wait()

    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_output_lines_keep_tabs_as_layout_and_show_other_controls():
    """A tab in a command's output (AIX indents 0512-039's second line with one) is layout: it
    is expanded, not shown as \\011; a BEL or a C1 character is shown, never obeyed."""
    from aixsmit.jobs.runner import decode_lines

    assert decode_lines(b"0512-039 mksysb: WARNING: x\n\twill NOT have a bootable image.\n")[1] == \
        "        will NOT have a bootable image."
    assert decode_lines("a\x07b\u009bc\n".encode())[0] == "a\\007b\\233c"
