"""Data classes and the configuration file (issue: system vs user data)."""

from __future__ import annotations

import pytest

from aixsmit import config
from aixsmit.errors import ConfigError
from aixsmit.fs.classify import classify
from aixsmit.fs.mounts import parse_aix_mount, parse_mountinfo
from aixsmit.fs.table import System

from conftest import FIXTURES


def test_aix_defaults_on_the_real_capture():
    mounts = parse_aix_mount((FIXTURES / "aix" / "mount.out").read_text()
                             + (FIXTURES / "aix" / "mount-remote.out").read_text())
    system = System(root="/", mounts=mounts, host_name="aix", config=config.Config())
    got = {e.mount_point: e.cls for e in system.table()}
    assert got == {
        "/": "system", "/usr": "system", "/var": "system", "/tmp": "system", "/home": "user",
        "/admin": "system", "/proc": "virtual", "/opt": "system", "/var/adm/ras/livedump": "system",
        "/aha": "virtual", "/net": "virtual", "/mnt": "remote",
    }
    check = system.sysonly()
    assert not check.ok and check.user == ("/home",) and check.remote == ("/mnt",)


LINUX = (
    "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
    "2 1 8:2 / /boot rw - ext4 /dev/sda2 rw\n"
    "3 2 8:3 / /boot/efi rw - vfat /dev/sda3 rw\n"
    "4 1 8:4 / /var/log rw - xfs /dev/sda4 rw\n"
    "5 1 8:5 / /home rw - ext4 /dev/sda5 rw\n"
    "6 1 0:20 / /run rw - tmpfs tmpfs rw\n"
    "7 1 0:21 / /sys rw - sysfs sysfs rw\n"
    "8 1 0:22 / /srv/nfs rw - nfs4 srv:/x rw\n"
    "9 1 0:23 / /mnt/remote rw - fuse.sshfs me@h:/ rw\n"
    "10 1 0:24 / /tmp rw - tmpfs tmpfs rw\n"
    "11 1 8:6 / /data rw - btrfs /dev/sda6 rw\n"
    "12 1 0:25 / /mnt/smb rw - cifs //h/s rw\n"
)


def test_linux_defaults():
    system = System(root="/", mounts=parse_mountinfo(LINUX), host_name="linux", config=config.Config())
    got = {e.mount_point: e.cls for e in system.table()}
    assert got == {
        "/": "system", "/boot": "system", "/boot/efi": "system", "/var/log": "system", "/home": "user",
        "/run": "virtual", "/sys": "virtual", "/srv/nfs": "remote", "/mnt/remote": "remote",
        "/tmp": "system", "/data": "user", "/mnt/smb": "remote",
    }


def test_configured_system_list(tmp_path):
    cfg_file = tmp_path / "aixsmit.yaml"
    cfg_file.write_text("system_filesystems: [/, /data]\n")
    cfg = config.load(str(cfg_file))
    system = System(root="/", mounts=parse_mountinfo(LINUX), host_name="linux", config=cfg)
    got = {e.mount_point: e.cls for e in system.table()}
    assert got["/data"] == "system" and got["/boot"] == "user" and got["/home"] == "user"


@pytest.mark.parametrize("text,msg", [
    ("system_filesystems: [/, /usr\n", r"line 2: "),
    ("system_filesystems:\n  - /\n  - usr\n", r"line 3: a mount point must be an absolute path"),
    ("volume_groups:\n  datavg: /data\n", r"line 2: volume group datavg must be a list"),
    ("colour: blue\n", r"line 1: unknown key 'colour'"),
    ("volume_groups:\n  rootvg: [/x]\n", r"line 2: rootvg is every file system"),
    # A key given twice: YAML would keep the last one without a word.
    ("volume_groups:\n  datavg: [/data]\n  datavg: [/srv]\n", r"line 3: 'datavg' is given twice \(first at line 2\)"),
    ("system_filesystems: [/]\nbackup_streams: 1\nsystem_filesystems: [/, /usr]\n", r"line 3: 'system_filesystems' is given twice"),
    # One file system in two volume groups: savevg of each would back it up twice, restvg clash.
    ("volume_groups:\n  a: [/data]\n  b: [/srv, /data]\n", r"line 3: /data is in volume group b and in a \(line 2\)"),
    # A quoted number is a string: the type is checked, not only the text.
    ('backup_streams: "2"\n', r"line 1: backup_streams must be 1"),
    ("backup_streams: '1'\n", r"line 1: backup_streams must be 1"),
    # A control character in a name is shown escaped, never sent raw to the terminal.
    ('volume_groups:\n  "a\\eb": [/x]\n', r"line 2: 'a\\033b' is not a valid volume group name"),
])
def test_broken_config_is_one_line_naming_file_and_line(tmp_path, text, msg):
    f = tmp_path / "aixsmit.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=msg) as err:
        config.load(str(f))
    assert str(err.value).startswith(str(f) + ": ")
    assert "\n" not in str(err.value)


def test_missing_named_config_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AIXSMIT_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="AIXSMIT_CONFIG names .*nope.yaml, which does not exist") as err:
        config.load()
    assert "\n" not in str(err.value)


def test_tmpfs_outside_system_list_is_virtual():
    (m,) = parse_mountinfo("5 1 0:30 / /scratch rw - tmpfs tmpfs rw\n")
    assert classify(m, config.LINUX_SYSTEM_FS) == "virtual"


def test_sysonly_of_an_empty_table_does_not_say_only_the_system_is_mounted(tmp_path):
    from conftest import aixsmit

    empty = tmp_path / "empty"
    empty.write_text("")
    for argv in (("sysonly", "--from", empty), ("sysonly", "--from", empty, "--json")):
        r = aixsmit("cmd", *argv)
        assert r.returncode == 1, r
        assert "Only system file systems are mounted" not in r.stdout
    assert '"ok": false' in r.stdout and '"root": false' in r.stdout


def test_a_missing_named_config_is_one_line_also_for_lsmount(tmp_path):
    import os

    from conftest import aixsmit

    r = aixsmit("cmd", "lsmount", env=dict(os.environ, AIXSMIT_CONFIG=str(tmp_path / "nope.yaml")))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "AIXSMIT_CONFIG names" in r.stderr
