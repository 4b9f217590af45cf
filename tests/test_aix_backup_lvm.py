"""AIX backup commands through stand-ins printing captured output; LVM from captured JSON."""

from __future__ import annotations

import json
import os

from aixsmit.fs.mounts import parse_mountinfo
from aixsmit.fs.table import System
from aixsmit.fs.volume_groups import parse_lsvg_l, volume_groups

from conftest import FIXTURES, aixsmit


def test_parse_lsvg_l_capture():
    vg, lvs = parse_lsvg_l((FIXTURES / "aix" / "lsvg-l-rootvg.out").read_text())
    assert vg == "rootvg" and len(lvs) == 10
    hd4 = next(lv for lv in lvs if lv.name == "hd4")
    assert (hd4.type, hd4.lps, hd4.state, hd4.mount_point) == ("jfs2", 122, "open/syncd", "/")


def test_aix_lsvg_commands(aix_bin):
    assert aixsmit("cmd", "lsvg").stdout.split() == ["rootvg", "datavg"]
    assert aixsmit("cmd", "lsvg", "-o").stdout.split() == ["rootvg"]
    out = aixsmit("cmd", "lsvg", "-l", "rootvg").stdout
    assert out.splitlines()[1] == "LV NAME             TYPE       LPs     PPs     PVs  LV STATE      MOUNT POINT"
    assert "hd1                 jfs2       41      41      1    open/syncd    /home" in out
    data = json.loads(aixsmit("cmd", "lsvg", "--json").stdout)
    assert [g["name"] for g in data] == ["rootvg", "datavg"] and data[0]["active"] and not data[1]["active"]


def test_aix_mksysb_drives_the_real_command(aix_bin, tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    r = aixsmit("cmd", "mksysb", "-i", "-e", "-b", "64", "/dev/rmt0")
    assert r.returncode == 0
    assert log.read_text().splitlines() == ["mksysb -i -e -b 64 /dev/rmt0"]
    assert r.stdout.splitlines()[-1] == "0512-038 mksysb: Backup Completed Successfully."
    r = aixsmit("cmd", "savevg", "-i", "-f", "/backup/datavg.img", "datavg")
    assert log.read_text().splitlines()[-1] == "savevg -i -f /backup/datavg.img datavg"


def test_aix_failure_exit_code_passes_through(aix_bin, monkeypatch):
    monkeypatch.setenv("AIX_BACKUP_OUT", "mksysb-bosboot-fail.out")
    monkeypatch.setenv("AIX_BACKUP_RC", "3")
    r = aixsmit("cmd", "mksysb", "-i", "/dev/rmt1")
    assert r.returncode == 3
    assert "bosboot -d /dev/rmt1.1 -a failed with return code 48." in r.stdout


def test_aix_refuses_root(aix_bin):
    r = aixsmit("cmd", "mksysb", "-i", "--root", "/tmp", "/dev/rmt0")
    assert r.returncode == 1 and "--root is not supported on AIX" in r.stderr


MOUNTS = (
    "1 0 254:0 / / rw - ext4 /dev/mapper/debian--vg-root rw\n"
    "2 1 254:1 / /home rw - ext4 /dev/mapper/debian--vg-home rw\n"
    "3 1 254:2 / /var/lib/postgresql rw - xfs /dev/mapper/datavg-pgdata rw\n"
    "4 1 8:1 / /boot rw - ext2 /dev/sda1 rw\n"
    "5 1 8:17 / /srv/app rw - ext4 /dev/sdb1 rw\n"
    "6 1 0:5 / /proc rw - proc proc rw\n"
)


def test_lvm_groups_from_captured_reports(tmp_path, monkeypatch):
    # linux-backup.md §4.1: every value is a string; --units b --nosuffix gives byte counts.
    monkeypatch.setenv("PATH", f"{FIXTURES / 'lvm' / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("AIX_FIXTURES", str(FIXTURES / "aix"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("volume_groups:\n  appvg: [/srv/app]\n")
    from aixsmit import config

    system = System(root="/", mounts=parse_mountinfo(MOUNTS), host_name="linux", config=config.load(str(cfg)))
    groups = {g.name: g for g in volume_groups(system)}
    assert list(groups) == ["rootvg", "appvg", "datavg"]
    root = groups["rootvg"]
    assert root.lvm_name == "debian-vg" and root.pp_size_mb == 4
    assert {lv.mount_point for lv in root.lvs if lv.mounted} == {"/", "/home", "/boot"}
    assert {lv.name for lv in root.lvs} >= {"root", "home"}
    data = groups["datavg"]
    assert data.source == "lvm" and data.pp_size_mb == 32
    pg = next(lv for lv in data.lvs if lv.name == "pgdata")
    assert pg.mounted and pg.mount_point == "/var/lib/postgresql" and pg.type == "xfs"
    archive = next(lv for lv in data.lvs if lv.name == "archive")
    assert not archive.mounted and archive.lps == 10 * 1024 // 32  # 10 GiB of 32 MiB extents
    assert [lv.mount_point for lv in groups["appvg"].lvs] == ["/srv/app"]


def test_aix_lsmksysb_drives_the_real_command(aix_bin, tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    r = aixsmit("cmd", "lsmksysb", "-l", "-f", "/dev/rmt0")
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["lsmksysb -l -f /dev/rmt0"]
    assert r.stdout.splitlines()[0] == "VOLUME GROUP:           rootvg"  # aix-smit.md §3.8, captured
