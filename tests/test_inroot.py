"""Paths inside a target resolve inside it: with openat2 and with the walk used where it is missing."""

from __future__ import annotations

import errno
import os

import pytest

from aixsmit import inroot


@pytest.fixture(params=["openat2", "walk"])
def tree(request, tmp_path, monkeypatch):
    """A target whose links all point out of it: absolute, through .., and at a host file."""
    if request.param == "walk":
        monkeypatch.setattr(inroot, "_kernel_openat2", lambda *a: None)
    root, host = tmp_path / "target", tmp_path / "host"
    root.mkdir()
    host.mkdir()
    (host / "fstab").write_text("host fstab\n")
    (root / "etc").symlink_to(host)  # absolute: the host's folder
    (root / "up").symlink_to("../../..")
    (root / "var").mkdir()
    (root / "var" / "shadow").symlink_to(host / "fstab")
    return root, host


def test_writes_stay_inside_the_target(tree):
    root, host = tree
    with pytest.raises(FileNotFoundError):  # /etc leads to ROOT/<host path>, which is not there
        inroot.write_in(str(root), "/etc/fstab", b"clone's fstab\n")
    inroot.write_in(str(root), "up/var/new", b"x")  # .. stops at the target
    assert (root / "var" / "new").read_bytes() == b"x"
    inroot.write_in(str(root), "var/shadow", b"replaced\n")  # the link is replaced, not written through
    assert not (root / "var" / "shadow").is_symlink() and (root / "var" / "shadow").read_text() == "replaced\n"
    assert inroot.read_in(str(root), "etc/fstab") is None
    assert sorted(os.listdir(host)) == ["fstab"] and (host / "fstab").read_text() == "host fstab\n"
    assert sorted(os.listdir(root)) == ["etc", "up", "var"]


def test_links_inside_are_followed_inside(tree):
    root, _ = tree
    (root / "real").mkdir()
    (root / "etc").unlink()
    (root / "etc").symlink_to("/real")  # absolute, meant for the clone's own /
    inroot.makedirs_in(str(root), "etc/default")
    inroot.write_in(str(root), "etc/default/grub", b"GRUB_TIMEOUT=0\n")
    assert (root / "real" / "default" / "grub").read_text() == "GRUB_TIMEOUT=0\n"
    assert inroot.read_in(str(root), "/etc/default/grub") == b"GRUB_TIMEOUT=0\n"


def test_mount_points_refuse_any_link(tree):
    root, _ = tree
    (root / "dev").mkdir()
    assert inroot.real_dir(str(root), "dev") == str(root / "dev")
    for path in ("etc", "up/dev"):
        with pytest.raises(OSError) as err:
            inroot.real_dir(str(root), path)
        assert err.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV)
