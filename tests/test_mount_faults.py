"""Faults at every step of umount --all-user, sysbackup and mount --ledger: the state directory
full, read-only or removed, or the process killed (SIGKILL). The process is stopped at the step
by the AIXSMIT_TEST_STOP_AT hook, the fault is made, the process goes on (or is killed); then,
with the fault gone, one ``aixsmit cmd mount --ledger`` must give back the exact findmnt table
of before. Also: two sysbackups at once, and a crash between a mount and its ledger update."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import aixsmit, findmnt_table, needs_root, run

pytestmark = needs_root

UMOUNT_STEPS = ["record:1", "umount:1", "unmounted:1", "record:2", "umount:2", "unmounted:2"]
MOUNT_STEPS = ["mount:1", "mounted:1", "mount:2", "mounted:2"]
FAULTS = ["full", "read-only", "removed", "SIGKILL"]


def findmnt(tr) -> list[dict]:
    return findmnt_table(tr.path)


class Faulty:
    """A state directory on its own small tmpfs, and the faults to make in it."""

    def __init__(self, tr):
        self.tr = tr
        self.fs = tr.base / "statefs"
        self.fs.mkdir()
        run("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "aixsmit-test-state", self.fs)
        self.dir = self.fs / "state"
        self.env = tr.env(AIXSMIT_STATE_DIR=self.dir)

    def make(self, fault: str) -> None:
        if fault == "full":
            fd = os.open(self.fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            finally:
                os.close(fd)
        elif fault == "read-only":
            # A read-only bind over the directory (a remount is refused while the running
            # process holds its lock file open for writing).
            run("mount", "--bind", "-o", "ro", self.dir, self.dir)
        elif fault == "removed":
            shutil.rmtree(self.dir)

    def undo(self, fault: str) -> None:
        if fault == "full":
            os.unlink(self.fs / "filler")
        elif fault == "read-only":
            run("umount", self.dir)

    def cleanup(self) -> None:
        subprocess.run(["umount", self.dir], capture_output=True)
        subprocess.run(["umount", self.fs], capture_output=True)


@pytest.fixture
def faulty(troot):
    troot.loop_mount("/home", 8)
    troot.loop_mount("/data", 8, autoclear=True)
    troot.p("/home/precious").write_text("home")
    troot.p("/data/precious").write_text("data")
    f = Faulty(troot)
    try:
        yield f
    finally:
        f.cleanup()


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] == "T"
    except (OSError, IndexError):
        return False


def with_fault(f: Faulty, args: list, step: str, fault: str) -> tuple[str, subprocess.CompletedProcess | None]:
    """Run ``aixsmit cmd ARGS`` stopped at ``step``, make ``fault`` there, let it go on (or kill it)."""
    env = dict(f.env, AIXSMIT_TEST_STOP_AT=step)
    p = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", *map(str, args)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, errors="surrogateescape")
    deadline = time.monotonic() + 60
    while not _stopped(p.pid) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if p.poll() is not None:
        out, err = p.communicate()
        return "not reached", subprocess.CompletedProcess(args, p.returncode, out, err)
    try:
        if fault == "SIGKILL":
            p.kill()
        else:
            f.make(fault)
            os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if fault != "SIGKILL":
        f.undo(fault)
    return "reached", subprocess.CompletedProcess(args, p.returncode, out, err)


def check_case(f: Faulty, before, args, step, fault, failures: list[str]) -> None:
    tr = f.tr
    reached, r = with_fault(f, args, step, fault)
    assert reached == "reached", f"{step}: never reached ({r.stderr})"
    for text in (r.stdout, r.stderr):
        assert "Traceback" not in text and "internal error" not in text, f"{args[0]} at {step}, {fault}: {text}"
    back = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=f.env)
    after = findmnt(tr)
    if back.returncode != 0 or after != before:
        failures.append(f"{args[0]} at {step}, {fault}: rc {r.returncode} {r.stderr.strip()!r}; "
                        f"mount --ledger rc {back.returncode} {back.stderr.strip()!r}; "
                        f"findmnt before {[x for x in before if x not in after]}, after {[x for x in after if x not in before]}")
        # Put the table back for the next case.
        for mp in ("/home", "/data"):
            if not any(x["target"] == str(tr.p(mp)) for x in after):
                subprocess.run(["mount", tr.images / f"{mp[1:]}.img", tr.p(mp)], capture_output=True)
    led = f.dir / "ledger"
    assert not (led.exists() and os.listdir(led)), f"{args[0]} at {step}, {fault}: records left {os.listdir(led)}"


def test_umount_all_user_under_every_fault_at_every_step(faulty):
    f = faulty
    before = findmnt(f.tr)
    failures: list[str] = []
    for step in UMOUNT_STEPS:
        for fault in FAULTS:
            check_case(f, before, ["umount", "--all-user", "--root", f.tr.path], step, fault, failures)
    assert not failures, "\n".join(failures)


def test_mount_ledger_under_every_fault_at_every_step(faulty, monkeypatch):
    from aixsmit.fs.table import System
    from aixsmit.fs.unmount import Ledger, plan_unmount, unmount

    f = faulty
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(f.dir))
    before = findmnt(f.tr)
    failures: list[str] = []
    for step in MOUNT_STEPS:
        for fault in FAULTS:
            system = System(root=str(f.tr.path))  # (in this process: the same as umount --all-user, faster)
            unmount(system, plan_unmount(system, [], all_user=True), Ledger())
            check_case(f, before, ["mount", "--ledger", "--root", f.tr.path], step, fault, failures)
    assert not failures, "\n".join(failures)


# sysbackup runs the same unmount and mount-again functions as the two commands above, which go
# through every step; here each kind of step once (the first record, the last unmount, the image,
# the first and the last mount again), every fault at each: 24 runs instead of 44.
SYSBACKUP_STEPS = ["record:1", "umount:2", "unmounted:2", "image", "mount:1", "mounted:2"]


def test_sysbackup_under_every_fault_at_each_kind_of_step(faulty):
    f = faulty
    out = f.tr.base / "out"
    out.mkdir()
    before = findmnt(f.tr)
    failures: list[str] = []
    for step in SYSBACKUP_STEPS:
        for fault in FAULTS:
            check_case(f, before, ["sysbackup", "--root", f.tr.path, out / "sys.mksysb"], step, fault, failures)
    assert not failures, "\n".join(failures)


def test_full_state_directory_stops_before_the_unmount_it_cannot_record(faulty):
    f = faulty
    r = aixsmit("cmd", "umount", "--all-user", "--root", f.tr.path, env=f.env)  # creates the directory
    assert aixsmit("cmd", "mount", "--ledger", "--root", f.tr.path, env=f.env).returncode == 0
    before = findmnt(f.tr)
    f.make("full")
    try:
        r = aixsmit("cmd", "umount", "--all-user", "--root", f.tr.path, env=f.env)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "No space left on device" in r.stderr, r.stderr
        assert "was not unmounted" in r.stderr and "Nothing was unmounted" in r.stderr
        assert findmnt(f.tr) == before
        r = aixsmit("cmd", "sysbackup", "--root", f.tr.path, f.tr.base / "sys.mksysb", env=f.env)
        assert r.returncode == 1 and "No space left on device" in r.stderr and findmnt(f.tr) == before
    finally:
        f.undo("full")


def test_two_sysbackups_at_once(faulty):
    """The second is refused while the first holds the lock (with user file systems unmounted);
    the first then mounts everything again and says OK."""
    f = faulty
    out = f.tr.base / "out"
    out.mkdir()
    before = findmnt(f.tr)
    env = dict(f.env, AIXSMIT_TEST_STOP_AT="image")
    first = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", "sysbackup", "--root", str(f.tr.path),
                              str(out / "a.mksysb")], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while not _stopped(first.pid):
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        second = aixsmit("cmd", "sysbackup", "--root", f.tr.path, out / "b.mksysb", env=f.env)
        assert second.returncode == 1 and "Result" not in second.stdout
        assert second.stderr.startswith(f"sysbackup: another aixsmit run is unmounting or mounting file systems "
                                        f"(pid {first.pid}, aixsmit sysbackup, since ")
        assert second.stderr.count("\n") == 1
        again = aixsmit("cmd", "mount", "--ledger", "--root", f.tr.path, env=f.env)
        assert again.returncode == 1 and f"pid {first.pid}" in again.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    o, e = first.communicate(timeout=120)
    assert first.returncode == 0 and "Result:           OK" in o, o + e
    assert findmnt(f.tr) == before and not os.listdir(f.dir / "ledger")


def test_crash_between_mount_and_ledger_update_on_a_new_loop_number(troot):
    """The loop device comes back on another number; the record is matched by its backing file,
    so mount --ledger clears it and later runs are not refused."""
    tr = troot
    tr.loop_mount("/home", 8, autoclear=True)
    env = tr.env()
    before = findmnt(tr)
    old = run("findmnt", "-n", "-o", "SOURCE", tr.p("/home")).stdout.strip()
    assert aixsmit("cmd", "umount", "/home", "--root", tr.path, env=env).returncode == 0
    # Someone else takes the old loop number meanwhile.
    other = tr.images / "other.img"
    with open(other, "wb") as fh:
        fh.truncate(1 << 20)
    run("losetup", old, other)
    tr.loops.append(old)
    p = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", "mount", "--ledger", "--root", str(tr.path)],
                         env=dict(env, AIXSMIT_TEST_STOP_AT="mounted"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not _stopped(p.pid):
        assert p.poll() is None, p.communicate()
        time.sleep(0.02)
    p.kill()
    p.wait()
    now = run("findmnt", "-n", "-o", "SOURCE", tr.p("/home")).stdout.strip()
    assert now.startswith("/dev/loop") and now != old
    assert findmnt(tr) == before
    r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env)
    assert r.returncode == 0 and "/home is already mounted" in r.stdout, r.stdout + r.stderr
    assert not os.listdir(tr.base / "state" / "ledger")
    out = tr.base / "out"
    out.mkdir()
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, out / "img", env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mount_ledger_goes_on_past_a_failure_and_reports_each(faulty):
    f = faulty
    before = findmnt(f.tr)
    assert aixsmit("cmd", "umount", "--all-user", "--root", f.tr.path, env=f.env).returncode == 0
    img = f.tr.images / "data.img"
    img.rename(img.with_suffix(".away"))  # /data's loop device detached itself; its file is gone
    r = aixsmit("cmd", "mount", "--ledger", "--root", f.tr.path, env=f.env)
    assert r.returncode == 1
    assert r.stderr.startswith("mount: 0506-324 Cannot mount /dev/loop") and "on /data:" in r.stderr
    assert r.stderr.count("\n") == 1 and "Mounted /home" in r.stdout
    img.with_suffix(".away").rename(img)
    r = aixsmit("cmd", "mount", "--ledger", "--root", f.tr.path, env=f.env)
    assert r.returncode == 0 and "Mounted /data" in r.stdout and "Mounted /home" not in r.stdout
    assert findmnt(f.tr) == before
