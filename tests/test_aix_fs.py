"""The AIX side, driven through stand-in executables that print captured AIX output."""

from __future__ import annotations

import json

from aixsmit.fs.holders import parse_aix_fuser
from aixsmit.fs.table import System
from aixsmit.fs.unmount import Ledger, mount_again, plan_unmount, unmount

from conftest import FIXTURES, aixsmit


def test_fuser_cu_parse():
    # aix-smit.md §3.7: "/home:    11630c(guest)"
    text = (FIXTURES / "aix" / "fuser-cu-home.out").read_text()
    got = [(h.pid, h.how, h.user) for h in parse_aix_fuser(text, "/home")]
    assert got == [(11630, "cwd", "guest"), (20512, "open file", "oracle"), (20733, "executable", "root")]


def test_aix_lsmount_and_sysonly_from_real_mount_command(aix_bin):
    system = System(root="/")
    assert system.host.name == "aix"
    classes = {e.mount_point: e.cls for e in system.table()}
    assert classes["/home"] == "user" and classes["/admin"] == "system" and classes["/aha"] == "virtual"
    r = aixsmit("cmd", "sysonly", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"ok": False, "root": True, "user": ["/home"], "remote": [], "virtual": ["/proc", "/aha"]}


def test_aix_busy_unmount_names_holders_and_runs_nothing(aix_bin, tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    monkeypatch.setenv("AIX_BUSY", "/home")
    r = aixsmit("cmd", "umount", "/home")
    assert r.returncode == 1
    assert r.stderr.startswith("umount: 0506-349 Cannot unmount /dev/hd1: The requested resource is busy.")
    assert "pid   11630  guest" in r.stderr
    assert "umount /home" not in log.read_text()  # nothing was unmounted


def test_aix_unmount_and_remount_argv(aix_bin, tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    system = System(root="/")
    unmount(system, plan_unmount(system, ["/home"]), Ledger())
    assert "umount /home" in log.read_text().splitlines()
    (entry,) = Ledger().entries()
    assert (entry.device, entry.vfs, entry.host) == ("/dev/hd1", "jfs2", "aix")
    # The stand-in 'mount' still lists /home as mounted, so make it list it without /home.
    text = (FIXTURES / "aix" / "mount.out").read_text().replace("/dev/hd1 ", "/dev/hdX ").replace(" /home ", " /homeX ")
    monkeypatch.setenv("AIX_FIXTURES", str(tmp_path))
    (tmp_path / "mount.out").write_text(text)
    assert mount_again(System(root="/"), Ledger(), from_ledger=True) == ["/home"]
    assert "mount -v jfs2 -o rw,log=/dev/hd8 /dev/hd1 /home" in log.read_text().splitlines()


def test_lsmount_from_file_uses_source_host_defaults(tmp_path):
    r = aixsmit("cmd", "lsmount", "--from", FIXTURES / "aix" / "mount.out", "--format", "aix", "--json")
    assert r.returncode == 0, r.stderr
    rows = {d["mount_point"]: d for d in json.loads(r.stdout)}
    assert rows["/admin"]["class"] == "system"  # an AIX default, whatever this host is
    assert rows["/home"]["options"] == ["rw", "log=/dev/hd8"]
    text = aixsmit("cmd", "lsmount", "--from", FIXTURES / "aix" / "mount.out").stdout
    assert text.splitlines()[0].startswith("  node       mounted        mounted over    vfs       date        options")
    assert "/dev/hd1         /home            jfs2   Nov 07 19:11 rw,log=/dev/hd8 user" in text


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.out"
    bad.write_text("  node mounted\n-----\n   /dev/hd4 / jfs2 sometime\n")
    r = aixsmit("cmd", "lsmount", "--from", bad, "--format", "aix")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "line 3:" in r.stderr and "Traceback" not in r.stderr
    r = aixsmit("cmd", "lsmount", "--from", tmp_path / "missing")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = aixsmit("cmd", "umount")
    assert r.returncode == 2 and "name a mount point" in r.stderr
    r = aixsmit("cmd", "lsmount", "--root", tmp_path / "nope")
    assert r.returncode == 1 and "not a directory" in r.stderr


def test_help_lists_exit_codes():
    for name in ("lsmount", "sysonly", "holders", "umount", "mount"):
        r = aixsmit("cmd", name, "--help")
        assert r.returncode == 0 and "exit status:" in r.stdout and "--root" in r.stdout
