"""The layouts of real machines, each through plan, dry run, holders, unmount, mount again and a
whole sysbackup, with util-linux as the oracle: ``findmnt --json -o TARGET,SOURCE,FSTYPE,
OPTIONS,FSROOT`` below the temporary root must be the same before and after, every time.

Layouts: ext4 with quota and super-block options, xfs, btrfs with subvolumes, two file systems
stacked on one mount point, a bind mount of a whole file system and one of a subdirectory, a
loop-mounted file system whose image lies on a user file system, an overlay whose layers do,
and mount points with a space and a newline."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from aixsmit.fs.ledger import Ledger

from conftest import aixsmit, findmnt_table, need_tool, needs_root, run

pytestmark = needs_root

def findmnt(tr) -> list[dict]:
    return findmnt_table(tr.path)


def user_rows(tr) -> list[str]:
    rows = json.loads(aixsmit("cmd", "lsmount", "--json", "--root", tr.path, env=tr.env()).stdout)
    return [r["mount_point"] for r in rows if r["class"] == "user"]


# --- layouts: each builds below tr.path and returns (mount point to hold, expected plan) --------

def ext4_quota(tr):
    img = tr.image("home", 16)
    tr.p("/home").mkdir(exist_ok=True)
    dev = run("losetup", "-f", "--show", img).stdout.strip()
    tr.loops.append(dev)
    run("mount", "-o", "usrquota,grpquota,errors=remount-ro,commit=30,nosuid", dev, tr.p("/home"))
    return "/home", ["/home"]


def xfs(tr):
    tr.loop_mount("/data", 300, "xfs")
    return "/data", ["/data"]


def btrfs_subvolumes(tr):
    img = tr.image("pool", 120, "btrfs")
    dev = run("losetup", "-f", "--show", img).stdout.strip()
    tr.loops.append(dev)
    top = tr.base / "pooltop"
    top.mkdir()
    run("mount", dev, top)
    run("btrfs", "-q", "subvolume", "create", top / "@home")
    run("btrfs", "-q", "subvolume", "create", top / "@srv")
    run("umount", top)
    for sub, mp in (("@home", "/home"), ("@srv", "/srv")):
        tr.p(mp).mkdir(exist_ok=True)
        run("mount", "-o", f"subvol={sub},compress=zstd", dev, tr.p(mp))
    return "/home", ["/srv", "/home"]


def stacked(tr):
    tr.loop_mount("/data", 8)
    tr.p("/data/lower-only").write_text("lower")
    img = tr.image("data_upper", 8)
    dev = run("losetup", "-f", "--show", img).stdout.strip()
    tr.loops.append(dev)
    run("mount", dev, tr.p("/data"))
    tr.p("/data/upper-only").write_text("upper")
    return "/data", ["/data", "/data"]


def bind_whole(tr):
    tr.loop_mount("/data", 8)
    tr.p("/mnt/data").mkdir(parents=True)
    run("mount", "--bind", tr.p("/data"), tr.p("/mnt/data"))
    return "/data", ["/mnt/data", "/data"]


def bind_subdir(tr):
    tr.loop_mount("/data", 8)
    tr.p("/data/www").mkdir()
    tr.p("/data/www/index.html").write_text("hi")
    tr.p("/srv/www").mkdir(parents=True)
    run("mount", "--bind", "-o", "ro", tr.p("/data/www"), tr.p("/srv/www"))
    return "/data", ["/srv/www", "/data"]


def loop_on_user_fs(tr):
    tr.loop_mount("/data", 16)
    img = tr.p("/data/disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    run("mkfs.ext4", "-q", "-F", img)
    dev = run("losetup", "-f", "--show", img).stdout.strip()
    tr.loops.insert(0, dev)
    tr.p("/img").mkdir()
    run("mount", dev, tr.p("/img"))
    tr.p("/img/inner").write_text("inner")
    # /img (depth 1, like /data) must go first: its loop device keeps /data busy.
    return "/data", ["/img", "/data"]


def overlay(tr):
    tr.loop_mount("/data", 8)
    for d in ("lower", "upper", "work"):
        tr.p(f"/data/{d}").mkdir()
    tr.p("/data/lower/base").write_text("base")
    tr.p("/srv/ov").mkdir(parents=True)
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={tr.p('/data/lower')},upperdir={tr.p('/data/upper')},workdir={tr.p('/data/work')}", tr.p("/srv/ov"))
    tr.p("/srv/ov/written").write_text("through the overlay")
    return "/data", ["/srv/ov", "/data"]


def odd_names(tr):
    tr.loop_mount("/home/my data", 8)
    tr.loop_mount("/home/new\nline", 8)
    return "/home/my data", ["/home/new\nline", "/home/my data"]


LAYOUTS = [ext4_quota, xfs, btrfs_subvolumes, stacked, bind_whole, bind_subdir, loop_on_user_fs, overlay, odd_names]


@need_tool("mkfs.xfs")
@need_tool("mkfs.btrfs")
@pytest.mark.parametrize("layout", LAYOUTS, ids=[f.__name__ for f in LAYOUTS])
def test_layout_through_every_operation(troot, layout):
    tr = troot
    env = tr.env()
    hold_mp, plan = layout(tr)
    before = findmnt(tr)
    assert before, "the layout mounted nothing"

    # Plan (dry run): the order the real run will use, every line with its options.
    dry = aixsmit("cmd", "umount", "--all-user", "--dry-run", "--root", tr.path, env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = [l for l in dry.stdout.splitlines() if l.startswith("would unmount ")]
    shown = [mp.replace("\n", "\\012").replace(" ", "\\040") for mp in plan]
    assert [l.split(" (")[0].removeprefix("would unmount ") for l in planned] == shown, dry.stdout

    # Holders: a process in the file system is named, and the dry run says it would be busy.
    proc = tr.hold(tr.p(hold_mp))
    h = aixsmit("cmd", "holders", hold_mp, "--root", tr.path, "--json", env=env)
    assert h.returncode == 0 and proc.pid in {r["pid"] for r in json.loads(h.stdout)}, h.stdout + h.stderr
    busy = aixsmit("cmd", "umount", "--all-user", "--root", tr.path, env=env)
    assert busy.returncode == 1 and "0506-349" in busy.stderr and f"pid {proc.pid}" in busy.stderr
    assert findmnt(tr) == before  # nothing was unmounted
    proc.kill()
    proc.wait()
    tr.procs.remove(proc)

    # Unmount: exactly the plan, one ledger record per unmount, in the plan's order.
    r = aixsmit("cmd", "umount", "--all-user", "--root", tr.path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [rec.mount_point for rec in Ledger().entries()] == plan
    assert user_rows(tr) == []

    # Mount again: the same table, per-mount and file-system options included.
    r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert findmnt(tr) == before
    assert Ledger().entries() == []

    # The whole procedure: the same table before and after a sysbackup.
    out = tr.base / "out"
    out.mkdir()
    r = aixsmit("cmd", "sysbackup", "--root", tr.path, out / "sys.mksysb", env=env)
    assert r.returncode == 0 and "Result:           OK" in r.stdout, r.stdout + r.stderr
    assert findmnt(tr) == before
    assert Ledger().entries() == []


def test_stack_comes_back_in_order_with_its_data(troot):
    tr = troot
    hold_mp, plan = stacked(tr)
    env = tr.env()
    assert aixsmit("cmd", "umount", "/data", "--root", tr.path, env=env).returncode == 0
    assert not tr.p("/data/lower-only").exists()
    assert aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=env).returncode == 0
    assert tr.p("/data/upper-only").read_text() == "upper" and not tr.p("/data/lower-only").exists()
    run("umount", tr.p("/data"))
    assert tr.p("/data/lower-only").read_text() == "lower"


def test_file_system_options_are_shown_and_kept(troot):
    tr = troot
    ext4_quota(tr)
    text = aixsmit("cmd", "lsmount", "--root", tr.path, env=tr.env()).stdout
    row = next(l for l in text.splitlines() if " /home " in l)
    for opt in ("nosuid", "usrquota", "grpquota", "errors=remount-ro", "commit=30"):
        assert opt in row


def test_holders_name_a_loop_device_and_a_swap_file(troot):
    tr = troot
    loop_on_user_fs(tr)
    env = tr.env()
    rows = json.loads(aixsmit("cmd", "holders", "/data", "--root", tr.path, "--json", env=env).stdout)
    assert [(r["how"], r["path"]) for r in rows] == [("loop backing file", "/data/disk.img")]
    assert rows[0]["command"].startswith("/dev/loop")
    run("umount", tr.p("/img"))
    swap = tr.p("/data/swapfile")
    run("dd", "if=/dev/zero", f"of={swap}", "bs=1M", "count=1")
    os.chmod(swap, 0o600)
    run("mkswap", swap)
    run("swapon", swap)
    try:
        r = aixsmit("cmd", "umount", "/data", "--root", tr.path, env=env)
        assert r.returncode == 1 and "swap (swap file /data/swapfile)" in r.stderr, r.stderr
        assert "Nothing was unmounted" in r.stderr
    finally:
        subprocess.run(["swapoff", swap])


def test_root_that_is_not_a_mount_point_plays_slash(tmp_path):
    """--root DIR on a directory: the file system holding DIR is / (its part below DIR) in the
    table, the image and the space estimate."""
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("restored\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "aixsmit.yaml").write_text("# test configuration\n")
    env = dict(os.environ, AIXSMIT_HOST="linux", AIXSMIT_CONFIG=str(tmp_path / "aixsmit.yaml"))
    rows = json.loads(aixsmit("cmd", "lsmount", "--json", "--root", root, env=env).stdout)
    assert [(r["mount_point"], r["class"]) for r in rows][:1] == [("/", "system")]
    out = tmp_path / "out"
    out.mkdir()
    r = aixsmit("cmd", "sysbackup", "--root", root, out / "img", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "about 2 MB needed" in r.stdout  # what lies below DIR, not the host file system
    names = aixsmit("cmd", "lsmksysb", "-f", out / "img").stdout.splitlines()
    assert "./etc/hostname" in names and "./usr/bin" in names
