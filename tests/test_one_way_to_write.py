"""Every file aixsmit writes goes through aixsmit.safefile: a name planted where it writes never
redirects root's write.

Files replaced whole (state, ledger records, a job's ``run``, files edited in a target tree,
work files) are new files renamed over the name only while they are still the files created;
logs and the lock, kept and added to, are opened only when they are this user's regular file
with one name. Planted, in a folder the attacker (uid 65534) can write: a symbolic link to a
file of root's (or to a name not there yet), a hard link to it, the attacker's own file, and
(for the files replaced whole) the temporary file swapped for a link while it is written. The file of root's is never
changed, nor is the attacker's file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import need_tool, needs_root
from test_planted_files import NOBODY, _as_attacker, shared  # noqa: F401 (a fixture)

pytestmark = [needs_root, need_tool("setpriv")]

SECRET = b"root:$6$secret:19000::::::\n"


@pytest.fixture
def place(shared):
    """(shared folder the attacker can write, root's victim file 0640 beside it, same file system)."""
    folder, victims, _ = shared
    victim = os.path.join(victims, "shadow")
    with open(victim, "wb") as f:
        f.write(SECRET)
    os.chmod(victim, 0o640)
    return folder, victim


def _plant(how: str, final: str, victim: str, as_attacker: bool = True) -> int | None:
    """Plant at ``final``; for the attacker's own file, return a descriptor of it (to check it
    is unchanged after the name was replaced)."""
    if how == "symlink":
        _as_attacker("ln", "-s", victim, final) if as_attacker else os.symlink(victim, final)
    elif how == "hardlink":  # (protected_hardlinks stops nobody's own; a machine without it does not)
        os.link(victim, final)
    elif how == "other-user-file":
        if as_attacker:
            _as_attacker("sh", "-c", f"umask 0; printf theirs > '{final}'")
        else:
            with open(final, "wb") as f:
                f.write(b"theirs")
            os.chown(final, NOBODY, NOBODY)
        return os.open(final, os.O_RDONLY)
    return None


def _swap_temp_during_fsync(monkeypatch, folder: str, victim: str) -> None:
    """The attacker's race, made certain: while root syncs its new hidden file, the file is
    renamed away and a link to the victim is put at its name (the folder is theirs to write)."""
    real = os.fsync

    def fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if os.path.dirname(path) == folder and os.path.basename(path).startswith("."):
            os.rename(path, os.path.join(folder, "stolen"))
            os.symlink(victim, path)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _victim_intact(victim: str) -> None:
    st = os.stat(victim)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    with open(victim, "rb") as f:
        assert f.read() == SECRET


# --- files replaced whole ------------------------------------------------------------------

def _w_atomic_json(folder):
    from aixsmit.state import atomic_write_json

    final = os.path.join(folder, "schedules.json")
    return final, lambda: atomic_write_json(final, {"new": 1}), 0o600


def _w_ledger(folder):
    from aixsmit.fs.ledger import Ledger, Record, stamp
    from aixsmit.state import mount_lock

    ledger = Ledger(os.path.dirname(folder))
    ledger.dir = folder  # (the shared folder plays STATE/ledger)
    rec = stamp(Record(mount_point="/home", path="/home", root="/", source="/dev/sdb1", vfs="ext4", uuid="u"), "r", 0)

    def write():
        with mount_lock("test"):
            ledger.add(rec)

    return ledger.record_path(rec), write, 0o600


def _w_inroot(folder):
    from aixsmit.inroot import write_in

    final = os.path.join(folder, "fstab")
    return final, lambda: write_in(os.path.dirname(folder), "shared/fstab", b"new\n"), 0o644


def _w_job_state(folder):
    from aixsmit.jobs.supervise import write_state

    return os.path.join(folder, "run"), lambda: write_state(folder, {"status": "OK"}), 0o600


def _w_work_text(folder):
    from aixsmit.osutil import write_text

    final = os.path.join(folder, "image.data")
    return final, lambda: write_text(final, "new\n"), 0o644


def _w_copy(folder):
    from aixsmit.osutil import copy_file

    final = os.path.join(folder, "snar")
    return final, lambda: copy_file("/proc/self/status", final), 0o600


def _w_menu_cache(folder, monkeypatch):
    from pathlib import Path

    from aixsmit.smit import model

    final = os.path.join(folder, "menus.cache")
    monkeypatch.setattr(model, "_cache_path", lambda: Path(final))
    return final, lambda: model._store("key", {"screens": {}}), 0o600


WHOLE = {"atomic_write_json": _w_atomic_json, "ledger": _w_ledger, "inroot": _w_inroot,
         "job_state": _w_job_state, "work_text": _w_work_text, "copy_file": _w_copy, "menu_cache": _w_menu_cache}
UNSYNCED = ("job_state", "work_text", "copy_file", "menu_cache")


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "other-user-file", "swap-temp"])
@pytest.mark.parametrize("writer", list(WHOLE))
def test_files_replaced_whole_never_write_through_a_planted_name(place, monkeypatch, writer, plant):
    folder, victim = place
    final, write, mode = WHOLE[writer](folder, monkeypatch) if writer == "menu_cache" else WHOLE[writer](folder)
    theirs = None
    kept = None  # inroot keeps an existing regular file's owner and mode (a target tree's own)
    if plant == "swap-temp":
        if writer in UNSYNCED:
            # Not synced: a link waits at the temporary name the old code wrote to (its pid's).
            tmp = {"job_state": ".run", "menu_cache": ".menus.cache"}.get(writer, "." + os.path.basename(final))
            _as_attacker("ln", "-s", victim, os.path.join(folder, f"{tmp}.{os.getpid()}"))
        else:
            _swap_temp_during_fsync(monkeypatch, folder, victim)
    else:
        theirs = _plant(plant, final, victim)
        if writer == "inroot" and plant != "symlink":
            kept = os.lstat(final)
    try:
        write()
        published = True
    except Exception as exc:  # the swap is found: one clear error, nothing published
        assert plant == "swap-temp", exc
        assert "moved or replaced by someone else" in str(exc) and "\n" not in str(exc)
        published = False
    monkeypatch.undo()
    _victim_intact(victim)
    if theirs is not None:
        assert os.pread(theirs, 100, 0) == b"theirs"
        os.close(theirs)
    if published:
        st = os.lstat(final)
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_ino != os.stat(victim).st_ino
        if kept is not None:
            assert (st.st_uid, st.st_mode) == (kept.st_uid, kept.st_mode) and st.st_ino != kept.st_ino
        else:
            assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == mode
    else:
        assert not os.path.islink(final) and not os.path.exists(final)
    # Nothing of root's is left behind under a hidden name.
    assert [n for n in os.listdir(folder) if n.startswith(".") and not os.path.islink(os.path.join(folder, n))] == []


# --- files added to ------------------------------------------------------------------------

def _a_supervisor_log(folder):
    """A detached job's supervisor appends the command's output to output.log."""
    log = os.path.join(folder, "output.log")

    def write():
        r = subprocess.run([sys.executable, "-S", "-m", "aixsmit.jobs.supervise", folder, "0", "echo", "new"],
                           capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        if r.returncode != 0:
            raise OSError(r.stderr.strip().splitlines()[-1])

    return log, write


def _a_smit_log(folder):
    from aixsmit.smit.log import SmitLog

    log = os.path.join(folder, "smit.log")
    return log, lambda: SmitLog.open(log, os.path.join(folder, "smit.script")).start()


def _a_backup_log(folder, monkeypatch):
    from aixsmit.backup import destination

    monkeypatch.setattr(destination, "BACKUP_LOG", os.path.join(folder, "vgbackuplog"))  # (joined: absolute wins)
    return os.path.join(folder, "vgbackuplog"), lambda: destination.log_backup("/x", "mksysb", "rootvg", "now", 1, "OK")


def _a_mount_lock(folder, monkeypatch):
    from aixsmit import state

    monkeypatch.setattr(state, "LOCK_NAME", os.path.join(folder, "mount.lock"))

    def write():
        with state.mount_lock("test"):
            pass

    return os.path.join(folder, "mount.lock"), write


def _a_job_seen(folder):
    from aixsmit.jobs.detached import JobInfo, mark_seen

    info = JobInfo("j", "t", "c", ["true"], False, start=0.0, dir=folder)
    return os.path.join(folder, "seen"), lambda: mark_seen(info)


@pytest.mark.parametrize("plant", ["symlink", "dangling-symlink", "hardlink", "other-user-file"])
@pytest.mark.parametrize("writer", ["supervisor_log", "smit_log", "backup_log", "mount_lock", "job_seen"])
def test_logs_and_the_lock_refuse_a_planted_name(place, monkeypatch, writer, plant):
    folder, victim = place
    if writer == "supervisor_log":
        final, write = _a_supervisor_log(folder)
    elif writer == "smit_log":
        final, write = _a_smit_log(folder)
    elif writer == "backup_log":
        final, write = _a_backup_log(folder, monkeypatch)
    elif writer == "job_seen":
        final, write = _a_job_seen(folder)
    else:
        final, write = _a_mount_lock(folder, monkeypatch)
    # A link to a name that does not exist yet (/etc/nologin, say): creating through it is the harm.
    nothing = os.path.join(os.path.dirname(victim), "nologin")
    theirs = _plant("symlink", final, nothing) if plant == "dangling-symlink" else _plant(plant, final, victim)
    try:
        write()
    except Exception as exc:
        assert "\n" not in str(exc).strip() or writer == "smit_log", exc  # (SMIT's 1800-093 is two lines, as AIX's)
    monkeypatch.undo()
    assert not os.path.lexists(nothing)
    _victim_intact(victim)
    if theirs is not None:
        assert os.pread(theirs, 100, 0) == b"theirs"
        assert os.fstat(theirs).st_uid == NOBODY
        os.close(theirs)


def test_a_log_of_its_own_is_created_0600_and_added_to(place):
    """The other side: nothing planted, the log is made new (0600 whatever the umask) and kept."""
    from aixsmit.safefile import open_own

    folder, _ = place
    log = os.path.join(folder, "log")
    old = os.umask(0)
    try:
        for line in (b"one\n", b"two\n"):
            fd = open_own(log)
            os.write(fd, line)
            os.close(fd)
    finally:
        os.umask(old)
    st = os.stat(log)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    with open(log, "rb") as f:
        assert f.read() == b"one\ntwo\n"
