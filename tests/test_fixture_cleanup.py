"""The temporary root's clean-up leaves nothing attached, even what a failed test left holding
its file systems busy (a test may only touch mounts it made: so it must undo all of them)."""

from __future__ import annotations

import subprocess

from conftest import TempRoot, _mounts_under, needs_root

pytestmark = needs_root


def test_a_loop_device_on_a_file_of_our_file_system_is_detached(tmp_path):
    # A layout test puts a file system image on /data and attaches it; failing before it
    # detaches, it left /data busy: umount failed, the lazy one left both loop devices behind.
    tmp_path.joinpath("t").mkdir()
    tr = TempRoot(tmp_path / "t")
    try:
        tr.loop_mount("/data", 16)
        inner = tr.p("/data/inner.img")
        subprocess.run(["truncate", "-s", "4M", inner], check=True)
        dev = subprocess.run(["losetup", "-f", "--show", inner], check=True, capture_output=True,
                             text=True).stdout.strip()
        outer = list(tr.loops)
    finally:
        tr.cleanup()
    assert _mounts_under(str(tr.path)) == []
    attached = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True).stdout
    assert not any(line.split()[0] in [dev, *outer] and str(tmp_path) in line for line in attached.splitlines())
    assert not any("inner.img" in line for line in attached.splitlines() if line.split()[0] == dev)
