"""Real mounts under a temporary root: classes, holders, unmount, rollback, ledger recovery.

These are the issue's "done when" steps, run as an operator would run them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from aixsmit.errors import AixsmitError
from aixsmit.fs.mounts import unescape
from aixsmit.fs.table import System
from aixsmit.fs.unmount import Ledger, mount_again, plan_unmount, unmount

from conftest import aixsmit, needs_root, run

pytestmark = needs_root


def mounted(tr, mp: str) -> bool:
    path = str(tr.p(mp))
    with open("/proc/self/mountinfo") as f:
        return any(unescape(line.split(" ")[4]) == path for line in f)


def test_done_when_walkthrough(troot):
    """sysonly fails; busy umount names the process and changes nothing; then succeeds; ledger remount."""
    tr = troot
    tr.loop_mount("/home")
    (tr.p("/home/alice")).mkdir()
    (tr.p("/home/alice/notes.txt")).write_text("keep me\n")
    env = tr.env()

    ls = aixsmit("cmd", "lsmount", "--root", tr.path, "--json", env=env)
    assert ls.returncode == 0, ls.stderr
    classes = {d["mount_point"]: d["class"] for d in json.loads(ls.stdout)}
    assert classes == {"/": "system", "/home": "user"}
    assert set(json.loads(ls.stdout)[0]) == {"node", "device", "mount_point", "vfs", "date", "options", "fsroot", "class"}

    check = aixsmit("cmd", "sysonly", "--root", tr.path, "--json", env=env)
    assert check.returncode == 1
    assert json.loads(check.stdout) == {"ok": False, "root": True, "user": ["/home"], "remote": [], "virtual": []}

    holder = tr.hold(tr.p("/home/alice"))
    h = aixsmit("cmd", "holders", "/home", "--root", tr.path, "--json", env=env)
    assert h.returncode == 0, h.stderr
    rows = json.loads(h.stdout)
    assert {"pid": holder.pid, "user": "root", "command": "sleep", "how": "cwd", "path": "/home/alice"} in rows

    busy = aixsmit("cmd", "umount", "/home", "--root", tr.path, env=env)
    assert busy.returncode == 1
    first = busy.stderr.splitlines()[0]
    assert "0506-349 Cannot unmount /dev/loop" in first and "busy" in first
    assert f"sleep (pid {holder.pid}, root)" in first and "Nothing was unmounted." in first
    assert "Traceback" not in busy.stderr
    assert mounted(tr, "/home")
    assert Ledger().entries() == []

    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    ok = aixsmit("cmd", "umount", "/home", "--root", tr.path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert not mounted(tr, "/home")
    assert aixsmit("cmd", "sysonly", "--root", tr.path, env=env).returncode == 0

    # The ledger (state directory) remembers it; a new process mounts it again with its files.
    back = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env)
    assert back.returncode == 0, back.stderr
    assert mounted(tr, "/home")
    assert tr.p("/home/alice/notes.txt").read_text() == "keep me\n"
    assert Ledger().entries() == []


def test_holders_by_open_file_mmap_and_exe_match_fuser(troot):
    tr = troot
    tr.loop_mount("/data")
    tr.p("/data/held").write_text("x")
    opener = tr.hold(tr.p("/data"), how="open")
    # An executable on the file system, running (exe and memory map).
    exe = tr.p("/data/mysleep")
    exe.write_bytes(open("/bin/sleep", "rb").read())
    exe.chmod(0o755)
    runner = subprocess.Popen([str(exe), "600"], start_new_session=True, cwd="/")
    tr.procs.append(runner)
    import time; time.sleep(0.2)
    system = System(root=str(tr.path))
    entry = [e for e in system.table() if e.mount_point == "/data"][0]
    found = system.host.holders([entry.mount], system.all_mounts())
    got = {(h.pid, h.how) for h in found}
    assert (opener.pid, "open file") in got
    assert (runner.pid, "executable") in got and (runner.pid, "memory map") in got
    # The same processes fuser -m finds.
    fuser = subprocess.run(["fuser", "-m", str(tr.p("/data"))], capture_output=True, text=True)
    assert {int(p) for p in fuser.stdout.split()} == {h.pid for h in found}


def test_bind_mount_holder_matched_by_path_not_just_device(troot):
    tr = troot
    tr.loop_mount("/srv")
    tr.p("/srv/homes").mkdir()
    tr.p("/srv/other").mkdir()
    tr.p("/home").mkdir(exist_ok=True)
    run("mount", "--bind", tr.p("/srv/homes"), tr.p("/home"))
    elsewhere = tr.hold(tr.p("/srv/other"))  # same device, but not through /home
    inside = tr.hold(tr.p("/home"))
    system = System(root=str(tr.path))
    home = [e for e in system.table() if e.mount_point == "/home"][0]
    pids = {h.pid for h in system.host.holders([home.mount], system.all_mounts())}
    assert inside.pid in pids and elsewhere.pid not in pids


def test_bind_mount_unmount_and_ledger_remount(troot):
    tr = troot
    tr.loop_mount("/srv")
    tr.p("/srv/homes").mkdir()
    tr.p("/srv/homes/f").write_text("bound")
    run("mount", "--bind", tr.p("/srv/homes"), tr.p("/home"))
    env = tr.env()
    assert aixsmit("cmd", "umount", "/home", "--root", tr.path, env=env).returncode == 0
    assert not mounted(tr, "/home")
    entry = Ledger().entries()[0]
    assert entry.is_bind and entry.fs_root == "/homes" and entry.source.startswith("/dev/loop")
    r = aixsmit("cmd", "mount", "/home", "--root", tr.path, env=env)
    assert r.returncode == 0, r.stderr
    assert tr.p("/home/f").read_text() == "bound"


def test_nested_mounts_unmounted_deepest_first_and_mounted_back_parents_first(troot):
    tr = troot
    tr.loop_mount("/home")
    tr.loop_mount("/home/big")
    tr.p("/home/big/file").write_text("big")
    system = System(root=str(tr.path))
    plan = plan_unmount(system, ["/home"])
    assert [e.mount_point for e in plan.steps] == ["/home/big", "/home"]
    unmount(system, plan, Ledger())
    assert not mounted(tr, "/home") and not mounted(tr, "/home/big")
    assert mount_again(system, Ledger(), from_ledger=True) == ["/home", "/home/big"]
    assert tr.p("/home/big/file").read_text() == "big"


def test_group_unmount_is_all_or_nothing(troot):
    """/data is kept busy by a loop device backed by a file on it (no process holds it). The
    holder check names it before anything changes; without that check, the unmount of /data
    fails after /home went, so /home is mounted again and the result says so."""
    tr = troot
    tr.loop_mount("/data")
    tr.loop_mount("/home")
    tr.p("/home/f").write_text("home")
    with open(tr.p("/data/backing"), "wb") as f:
        f.truncate(1 << 20)
    loop = run("losetup", "-f", "--show", tr.p("/data/backing")).stdout.strip()
    tr.loops.insert(0, loop)
    system = System(root=str(tr.path))
    plan = plan_unmount(system, [], all_user=True)
    assert [e.mount_point for e in plan.steps] == ["/home", "/data"]
    with pytest.raises(AixsmitError) as err:
        unmount(system, plan, Ledger())
    assert f"held by 1 holder: {loop} (loop backing file /data/backing)" in str(err.value)
    assert "Nothing was unmounted" in str(err.value) and mounted(tr, "/home")
    with pytest.raises(AixsmitError) as err:
        unmount(system, plan, Ledger(), check_holders=False)
    msg = str(err.value)
    assert "0506-349" in msg and loop in msg
    assert "mounted again: /home" in msg
    assert mounted(tr, "/home") and mounted(tr, "/data")
    assert tr.p("/home/f").read_text() == "home"
    assert Ledger().entries() == []


def test_refusals(troot):
    tr = troot
    tr.p("/proc").mkdir()
    run("mount", "-t", "proc", "proc", tr.p("/proc"))
    tr.loop_mount("/usr")
    env = tr.env()
    r = aixsmit("cmd", "umount", "/", "--root", tr.path, env=env)
    assert r.returncode == 1 and "system data" in r.stderr
    r = aixsmit("cmd", "umount", "/usr", "--root", tr.path, env=env)
    assert r.returncode == 1 and "aixsmit does not unmount system file systems" in r.stderr
    r = aixsmit("cmd", "umount", "/proc", "--root", tr.path, env=env)
    assert r.returncode == 1 and "virtual file system (proc)" in r.stderr
    r = aixsmit("cmd", "umount", "/nothing", "--root", tr.path, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == "umount: /nothing: 0506-347 Cannot find anything to unmount."
    r = aixsmit("cmd", "mount", "/nothing", "--root", tr.path, env=env)
    assert r.stderr.strip() == "mount: 0506-334 /nothing is not a known file system."
    assert mounted(tr, "/usr") and mounted(tr, "/proc")


def test_crash_after_unmount_recovered_from_ledger_with_autoclear_loop(troot):
    """A process killed with SIGKILL right after unmounting: the ledger still knows, and the loop
    device that 'mount -o loop' detached on unmount is attached again from its file."""
    tr = troot
    tr.loop_mount("/home", autoclear=True)
    tr.p("/home/precious").write_text("intact")
    env = tr.env()
    code = (
        "import os,signal,sys; from aixsmit.fs.table import System; "
        "from aixsmit.fs.unmount import Ledger, plan_unmount, unmount; "
        f"s=System(root={str(tr.path)!r}); unmount(s, plan_unmount(s, ['/home']), Ledger()); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    p = subprocess.run([os.sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not mounted(tr, "/home")
    (entry,) = Ledger().entries()
    assert entry.backing_file.endswith("home.img")
    back = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env)
    assert back.returncode == 0, back.stderr
    assert tr.p("/home/precious").read_text() == "intact"


def test_dry_run_changes_nothing(troot):
    tr = troot
    tr.loop_mount("/home")
    r = aixsmit("cmd", "umount", "--dry-run", "--all-user", "--root", tr.path, env=tr.env())
    assert r.returncode == 0 and "would unmount /home" in r.stdout
    assert mounted(tr, "/home")


def test_mount_from_fstab_under_root(troot):
    tr = troot
    dev = tr.loop_mount("/home")
    run("umount", tr.p("/home"))
    tr.p("/etc/fstab").write_text(f"# test\n{dev} /home ext4 defaults,nofail 0 2\n")
    r = aixsmit("cmd", "mount", "/home", "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stderr
    assert mounted(tr, "/home")
    r = aixsmit("cmd", "mount", "/home", "--root", tr.path, env=tr.env())
    assert r.returncode == 0 and "already mounted" in r.stdout


def test_space_and_odd_names_in_mount_points(troot):
    tr = troot
    tr.loop_mount("/home/my data")
    env = tr.env()
    rows = json.loads(aixsmit("cmd", "lsmount", "--root", tr.path, "--json", env=env).stdout)
    assert {"/home/my data"} <= {r["mount_point"] for r in rows}
    text = aixsmit("cmd", "lsmount", "--root", tr.path, env=env).stdout
    assert "/home/my\\040data" in text
    assert aixsmit("cmd", "umount", "/home/my data", "--root", tr.path, env=env).returncode == 0
    assert aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env).returncode == 0
    assert mounted(tr, "/home/my data")
