"""The guided procedure as one command, on a temporary root with loop-mounted user file systems.
None of the failure cases may leave a user file system unmounted or an image that looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from aixsmit.backup import engine, sysbackup
from aixsmit.fs.table import System
from aixsmit.fs.unmount import Ledger

from conftest import aixsmit, needs_root

pytestmark = needs_root


def mounted(tr, mp: str) -> bool:
    from aixsmit.fs.mounts import read_mountinfo

    return any(m.path == str(tr.p(mp)) for m in read_mountinfo())


@pytest.fixture
def sysroot(troot):
    tr = troot
    tr.loop_mount("/home")
    tr.loop_mount("/data")
    tr.p("/usr/bin").mkdir(parents=True)
    tr.p("/usr/bin/tool").write_text("tool")
    tr.p("/home/alice").mkdir()
    tr.p("/home/alice/thesis.tex").write_text("user data")
    tr.p("/data/db").write_text("rows")
    tr.out = tr.base / "out"
    tr.out.mkdir()
    return tr


def test_happy_path(sysroot):
    tr = sysroot
    img = tr.out / "sys.mksysb"
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0512-038 mksysb: Backup Completed Successfully." in r.stdout
    assert "  Result:           OK" in r.stdout and "  Verified:         OK" in r.stdout
    assert "  Mounted again:    /home /data" in r.stdout or "  Mounted again:    /data /home" in r.stdout
    names = aixsmit("cmd", "lsmksysb", "-f", img).stdout.splitlines()
    assert "./usr/bin/tool" in names and "./home" in names and "./data" in names
    assert not any(n.startswith(("./home/", "./data/")) for n in names)  # no user data in the image
    assert mounted(tr, "/home") and mounted(tr, "/data")
    assert tr.p("/home/alice/thesis.tex").read_text() == "user data"
    assert Ledger().entries() == []


def test_busy_user_fs_stops_before_anything_changes(sysroot):
    tr = sysroot
    holder = tr.hold(tr.p("/home/alice"))
    img = tr.out / "sys.mksysb"
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 1
    assert "0506-349" in r.stderr and f"sleep (pid {holder.pid}, root)" in r.stderr
    assert "Nothing was unmounted." in r.stderr
    assert mounted(tr, "/home") and mounted(tr, "/data")
    assert not img.exists() and os.listdir(tr.out) == []


def test_skip_busy_leaves_it_mounted_and_out_of_the_image(sysroot):
    tr = sysroot
    tr.hold(tr.p("/home/alice"))
    img = tr.out / "sys.mksysb"
    r = aixsmit("cmd", "sysbackup", "--skip-busy", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "/home is busy; it stays mounted and is left out of the image." in r.stderr
    names = aixsmit("cmd", "lsmksysb", "-f", img).stdout.splitlines()
    assert not any(n.startswith(("./home/", "./data/")) for n in names)
    assert mounted(tr, "/home") and mounted(tr, "/data")


def test_destination_on_a_user_fs_is_refused_first(sysroot):
    tr = sysroot
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, tr.p("/home/sys.mksysb"), env=tr.env())
    assert r.returncode == 1
    assert "lies on the user file system /home, which this procedure unmounts" in r.stderr
    assert "Step 3" not in r.stdout
    assert mounted(tr, "/home") and not tr.p("/home/sys.mksysb").exists()


def test_no_room_found_after_unmounting_mounts_again(sysroot, monkeypatch):
    """The estimate passes (made too small here) but the destination has no room: the user
    file systems are mounted again, the exit is non-zero, and there is no image."""
    tr = sysroot
    small = tr.base / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tiny", small], check=True)
    try:
        tr.p("/usr/big").write_bytes(os.urandom(2 << 20))
        monkeypatch.setattr(sysbackup, "estimate", lambda system, keep: 0)
        out = []
        s = sysbackup.run(System(root=str(tr.path)), str(small / "sys.mksysb"), lambda l, st: out.append(l))
        assert s.code == engine.EXIT_FAILED
        assert any("not enough space" in l for l in out)
        assert s.unmounted and sorted(s.remounted) == sorted(s.unmounted)
        assert mounted(tr, "/home") and mounted(tr, "/data")
        assert os.listdir(small) == []
        assert Ledger().entries() == []
    finally:
        subprocess.run(["umount", small])


def _run_until_partial(tr, img):
    proc = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", "sysbackup", "--root", str(tr.path), str(img)],
                            env=tr.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 60
    while time.time() < end and not any(engine.PARTIAL in n for n in os.listdir(tr.out)):
        time.sleep(0.005)
    return proc


def test_sigterm_in_the_middle_mounts_again(sysroot):
    tr = sysroot
    tr.bulk("/usr/bulk", 96)
    img = tr.out / "sys.mksysb"
    proc = _run_until_partial(tr, img)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("finished before the signal")
    assert proc.returncode == 4, out + err
    assert "Abnormal program termination" in err
    assert mounted(tr, "/home") and mounted(tr, "/data")
    assert not img.exists()


def test_sigkill_then_ledger_recovery(sysroot):
    tr = sysroot
    tr.bulk("/usr/bulk", 96)
    img = tr.out / "sys.mksysb"
    proc = _run_until_partial(tr, img)
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    assert not img.exists()
    assert not mounted(tr, "/home")  # killed with the user file systems unmounted...
    assert {e.mount_point for e in Ledger().entries()} == {"/home", "/data"}  # ...and recorded
    again = aixsmit("cmd", "sysbackup", "--root", tr.path, img, env=tr.env())
    assert again.returncode == 1 and "left unmounted by an earlier aixsmit run" in again.stderr
    assert "aixsmit cmd mount --ledger" in again.stderr
    r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stderr
    assert tr.p("/home/alice/thesis.tex").read_text() == "user data" and tr.p("/data/db").read_text() == "rows"
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stderr


def test_a_destination_that_is_not_utf8_is_refused_before_anything_changes(sysroot):
    tr = sysroot
    where = os.path.join(os.fsencode(tr.out), b"nu\xff")
    os.mkdir(where)
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, os.fsdecode(where + b"/s.img"), env=tr.env())
    assert r.returncode == 1, r.stdout + r.stderr
    assert "internal error" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "\\377" in r.stderr and "Nothing was changed" in r.stderr
    assert os.listdir(where) == [] and mounted(tr, "/home") and mounted(tr, "/data")


def test_an_unexpected_failure_after_unmounting_mounts_again_and_is_not_called_refused(sysroot, monkeypatch):
    tr = sysroot

    def boom(req, emit):
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(sysbackup, "create_image", boom)
    out = []
    s = sysbackup.run(System(root=str(tr.path)), str(tr.out / "s.img"), lambda l, st: out.append(l))
    assert s.code == engine.EXIT_FAILED != sysbackup.EXIT_REFUSED
    assert sorted(s.remounted) == ["/data", "/home"] and mounted(tr, "/home") and mounted(tr, "/data")
    assert any("UnicodeEncodeError" in l for l in out) and any("Result:           FAILED" in l for l in out)
    assert Ledger().entries() == []


def test_a_signal_while_verifying_ends_with_exit_4_and_the_summary(sysroot, monkeypatch):
    tr = sysroot
    img = tr.out / "s.img"

    def stopped_verify(path, program):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        raise AssertionError("the signal did not stop the verify")

    def outside(signum, frame):  # what runs if sysbackup's own handler is not in place
        raise AssertionError("the signal reached the handler from before sysbackup")

    monkeypatch.setattr(sysbackup.archive, "verify", stopped_verify)
    out = []
    before = signal.signal(signal.SIGTERM, outside)
    try:
        s = sysbackup.run(System(root=str(tr.path)), str(img), lambda l, st: out.append(l))
    finally:
        signal.signal(signal.SIGTERM, before)
    assert s.code == engine.EXIT_SIGNAL, out
    assert any("0512-007" in l for l in out) and any(f"verify -f {img}" in l for l in out)
    assert f"  Image:            {img}" in out and "  Verified:         not verified (stopped)" in out
    assert any("Result:           FAILED" in l for l in out)
    assert img.exists() and mounted(tr, "/home") and mounted(tr, "/data")


def test_a_failed_mount_again_still_names_the_image_and_what_was_mounted(sysroot, monkeypatch):
    tr = sysroot
    img = tr.out / "s.img"
    real = sysbackup.create_image
    outside = tr.base / "elsewhere"
    outside.mkdir()

    def swap_mount_point(req, emit):
        # Someone replaces the unmounted /data's mount point by a link while the image is made.
        tr.p("/data").rmdir()
        os.symlink(outside, tr.p("/data"))
        return real(req, emit)

    monkeypatch.setattr(sysbackup, "create_image", swap_mount_point)
    out = []
    try:
        s = sysbackup.run(System(root=str(tr.path)), str(img), lambda l, st: out.append(l))
        assert s.code == sysbackup.EXIT_REMOUNT_FAILED, out
        assert s.remounted == ["/home"] and mounted(tr, "/home") and not mounted(tr, "/data")
        assert f"  Image:            {img}" in out and "  Mounted again:    /home" in out
        assert "  Verified:         OK" in out and any("Result:           FAILED" in l for l in out)
        assert os.listdir(outside) == []
    finally:
        if tr.p("/data").is_symlink():
            tr.p("/data").unlink()
            tr.p("/data").mkdir()
        r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=tr.env())
    assert r.returncode == 0 and mounted(tr, "/data"), r.stderr
