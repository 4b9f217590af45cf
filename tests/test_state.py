"""The state directory is trusted only as sshd trusts a key file, and one lock serialises every
unmount and mount again (across processes, released by the kernel when its holder dies)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest

from aixsmit import state
from aixsmit.errors import AixsmitError
from aixsmit.state import LockBusy, StateDirError, mount_lock, state_path

from conftest import IS_ROOT, aixsmit

HOLD = """
import sys, time
from aixsmit.state import mount_lock
with mount_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print("releasing", flush=True)
"""


@pytest.fixture
def sd(tmp_path, monkeypatch):
    d = tmp_path / "state"
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(d))
    return d


def hold(seconds: float, who: str = "sysbackup") -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, who, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "held\n"
    return p


def test_missing_directory_is_created_private(sd):
    assert state_path() == str(sd)
    assert sd.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_directory_writable_by_others_is_refused(sd, mode):
    sd.mkdir()
    sd.chmod(mode)
    with pytest.raises(StateDirError, match=r"writable by .*refusing to trust it") as exc:
        state_path()
    assert "\n" not in str(exc.value) and isinstance(exc.value, AixsmitError)


def test_symlink_is_refused(sd, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    sd.symlink_to(real)
    with pytest.raises(StateDirError, match="symbolic link"):
        state_path()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give the directory away")
def test_directory_of_another_user_is_refused(sd):
    sd.mkdir(mode=0o700)
    os.chown(sd, 65534, 65534)
    with pytest.raises(StateDirError, match="owned by"):
        state_path()


def test_loose_parent_is_refused_but_sticky_tmp_is_not(tmp_path, monkeypatch):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(loose / "state"))
    with pytest.raises(StateDirError, match="directory above it"):
        state_path()
    assert not (loose / "state").exists()  # refused before anything was created there
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(loose / "a" / "b" / "state"))
    with pytest.raises(StateDirError, match="directory above it"):
        state_path()
    assert os.listdir(loose) == []
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(loose / "state"))
    loose.chmod(0o1777)  # as /tmp: others cannot rename or remove what is not theirs
    assert state_path() == str(loose / "state")


@pytest.mark.skipif(not IS_ROOT, reason="makes a folder of another user")
def test_a_link_in_another_users_folder_on_the_path_is_refused(tmp_path, monkeypatch):
    # /…/np/evil is nobody's; evil/state is their link to a folder of root's. Resolved, the path
    # is root's all the way; as written, nobody can point evil/state elsewhere at any time.
    (tmp_path / "np/evil").mkdir(parents=True)
    (tmp_path / "rootowned").mkdir()
    os.symlink(tmp_path / "rootowned", tmp_path / "np/evil/state")
    os.lchown(tmp_path / "np/evil/state", 65534, 65534)
    os.chown(tmp_path / "np/evil", 65534, 65534)
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(tmp_path / "np/evil/state/sub"))
    with pytest.raises(StateDirError, match=f"{tmp_path}/np/evil, is owned by"):
        state_path()
    assert os.listdir(tmp_path / "rootowned") == []


def test_planted_ledger_is_never_read(sd):
    """A directory another user can write is refused by the commands too, before any mount."""
    sd.mkdir()
    sd.chmod(0o777)
    (sd / "unmounted.json").write_text('{"version": 2, "records": []}')
    r = aixsmit("cmd", "mount", "--ledger")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "refusing to trust it" in r.stderr and "Traceback" not in r.stderr


def test_lock_is_exclusive_across_processes_and_names_its_holder(sd):
    p = hold(30)
    try:
        with pytest.raises(LockBusy) as exc:
            with mount_lock("umount"):
                pass
        e = exc.value
        assert e.pid == p.pid and "sysbackup" in e.command and e.since
        assert str(e).startswith(f"umount: another aixsmit run is unmounting or mounting file systems (pid {p.pid}")
        r = aixsmit("cmd", "umount", "--all-user", "--root", sd.parent)
        assert r.returncode == 1 and f"pid {p.pid}" in r.stderr and r.stderr.count("\n") == 1
    finally:
        p.kill()
        p.wait()
    with mount_lock("umount"):  # the kernel released the killed holder's lock: nothing stale
        assert state.lock_held()
    assert not state.lock_held()


def test_lock_waits_when_asked(sd):
    # Obtained only once the holder let go: it said "releasing" before it did, so the word is
    # in the pipe by then (no clock involved: a slow machine cannot make this pass or fail).
    p = hold(0.5)
    try:
        with mount_lock("schedule", wait=20):
            assert select.select([p.stdout], [], [], 0)[0] and p.stdout.readline() == "releasing\n"
    finally:
        p.wait()


def test_lock_is_reentrant_in_one_thread_and_not_inherited_by_children(sd):
    with mount_lock("sysbackup"):
        with mount_lock("umount"):
            assert state.lock_held()
        assert state.lock_held()
        # A helper started under the lock (a FUSE daemon from mount) must not keep it after we let go.
        child = subprocess.Popen(["sleep", "30"])
    try:
        with mount_lock("mount"):
            pass
    finally:
        child.kill()
        child.wait()


def test_lock_works_in_a_read_only_state_directory(sd, tmp_path):
    with mount_lock("umount"):
        pass
    if not IS_ROOT:
        pytest.skip("needs root to make a read-only mount")
    subprocess.run(["mount", "--bind", sd, sd], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", sd], check=True)
        with mount_lock("mount"):
            assert state.lock_held()
    finally:
        subprocess.run(["umount", sd], check=True)


def test_lock_still_locks_after_the_state_directory_is_recreated(sd):
    """The state directory removed under a run that holds the lock: its flock is on a deleted
    file. Before the ledger changes, the lock is taken again on the new mount.lock; when
    another process took that one meanwhile, the change is refused in one line naming it."""
    import fcntl
    import shutil

    from aixsmit.fs.ledger import Ledger, Record

    rec = Record(mount_point="/home", path="/home", root="/", source="/dev/x", vfs="ext4", id="r1")
    with mount_lock("sysbackup"):
        led = Ledger()
        led.add(rec)
        shutil.rmtree(sd)
        led.ensure([rec])  # nobody else holds the new lock: taken again, the record written again
        assert led.has(rec)
        fd = os.open(sd / "mount.lock", os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        shutil.rmtree(sd)
        p = hold(30, "umount")  # another run locks the new state directory's mount.lock
        try:
            with pytest.raises(LockBusy) as exc:
                led.ensure([rec])
            assert f"pid {p.pid}" in str(exc.value) and "\n" not in str(exc.value)
            assert not led.has(rec)
        finally:
            p.kill()
            p.wait()
