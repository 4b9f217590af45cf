"""aixsmit/osutil.py: the few shutil/tempfile calls the backup commands need, without their
import cost. Each must behave as the call it replaces."""

from __future__ import annotations

import os
import shutil
import stat

from aixsmit import osutil


def test_which_is_shutil_which_and_follows_path(tmp_path, monkeypatch):
    for name in ("tar", "sh", "no-such-program-here"):
        assert osutil.which(name) == shutil.which(name)
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "plain").write_text("not executable")
    assert osutil.which("tool") is None
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert osutil.which("tool") == str(tool)  # a new PATH is looked up anew
    assert osutil.which("plain") is None


def test_make_temp_dir_and_remove_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    d = osutil.make_temp_dir("aixsmit-work-")
    assert os.path.dirname(d) == str(tmp_path) and os.path.basename(d).startswith("aixsmit-work-")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert osutil.make_temp_dir("aixsmit-work-") != d
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("must survive")
    os.makedirs(os.path.join(d, "a", "b"))
    open(os.path.join(d, "a", "b", "f"), "w").close()
    os.symlink(outside, os.path.join(d, "a", "link-to-outside"))
    osutil.remove_tree(d)
    assert not os.path.exists(d)
    assert (outside / "keep").read_text() == "must survive"  # a link is removed, not followed
    osutil.remove_tree(d)  # already gone: nothing to do, no error


def test_copy_file(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = os.urandom(3 << 20) + b"tail"
    src.write_bytes(data)
    dst.write_bytes(b"x" * (5 << 20))  # longer: replaced, not overwritten in part
    osutil.copy_file(str(src), str(dst))
    assert dst.read_bytes() == data
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    osutil.copy_file(str(empty), str(dst))
    assert dst.read_bytes() == b""
    osutil.copy_file("/proc/self/status", str(dst))  # size 0 as stat says, yet has content
    assert dst.read_bytes().startswith(b"Name:")


def test_grow_pipe_gives_the_size_granted(monkeypatch):
    import fcntl

    r, w = os.pipe()
    try:
        assert osutil.grow_pipe(r, (1 << 20,)) == fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == 1 << 20
        # More than the kernel allows anyone: the next size asked for is granted.
        assert osutil.grow_pipe(r, (1 << 30, 1 << 18)) == 1 << 18
        monkeypatch.delattr(fcntl, "F_SETPIPE_SZ")  # as on AIX
        assert osutil.grow_pipe(r) == 1 << 16
    finally:
        os.close(r)
        os.close(w)
