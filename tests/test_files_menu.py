"""The procedure's missing menu paths, run from their dialogs as an operator runs them: Backup a
File or Directory (AIX's backup by name), Restore a File or Directory, and List Contents of a
Backup for every kind of backup (an image, a backup by level, a backup by name)."""

from __future__ import annotations

import os
import subprocess

import pytest

from aixsmit.smit import command
from aixsmit.smit.model import load_tree
from aixsmit.smit.services import SERVICES

from treecmp import build_tree, diff, snapshot


@pytest.fixture(scope="module")
def tree():
    return load_tree(services=set(SERVICES))


def run_dialog(tree, fastpath, values, root="/", cwd=None, input=None):
    argv = command.runnable(command.build(tree.get(fastpath), values, "linux", root))
    return subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape", cwd=cwd, input=input)


def test_the_paths_are_in_the_menus(tree):
    def labels(fp):
        return {i.label: i.next for i in tree.get(fp).items}

    assert labels("fs")["List Contents of a Backup"] == "listtoc"
    assert labels("storage")["Files & Directories"] == "filemgr"
    assert labels("filemgr") == {"Backup a File or Directory": "backfile", "Restore a File or Directory": "restfile",
                                 "List Contents of a Backup": "listtoc"}
    assert tree.get("backfile").warning == "This option will perform a backup by name."


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree has device nodes and owners only root can make")
@pytest.mark.parametrize("root", ["/", "sys"])
def test_backup_by_name_then_list_then_restore_from_the_dialogs(tree, tmp_path, root):
    """Every kind of entry survives; the archive holds ./names relative to the working
    directory, under --root inside the root."""
    base = tmp_path / "sys" if root != "/" else tmp_path
    src = base / "data"
    build_tree(str(src / "proj"))
    (src / "other").mkdir()
    (src / "other" / "left out").write_text("not named")
    out = tmp_path / "out"
    out.mkdir()
    archive = out / "proj.bak"
    shown_dir = "/data" if root != "/" else str(src)
    r = run_dialog(tree, "backfile", {"device": str(archive), "names": "proj", "dir": shown_dir, "verbose": "yes"},
                   root=str(base) if root != "/" else "/")
    assert r.returncode == 0, r.stderr
    assert "a ./proj/etc/motd" in r.stdout.splitlines()
    assert r.stdout.splitlines()[-1] == "backup: The backup is complete."
    assert not [n for n in os.listdir(out) if n != "proj.bak"], "a work file was left beside the archive"

    t = run_dialog(tree, "listtoc", {"device": str(archive)})
    assert t.returncode == 0, t.stderr
    assert "    Files backed up by name" in t.stderr.splitlines()
    assert f"{len('hello') * 100 + 100:>12} ./proj/etc/motd" in t.stdout.splitlines()
    assert not any("left out" in line for line in t.stdout.splitlines())

    target = tmp_path / "restored"
    target.mkdir()
    x = run_dialog(tree, "restfile", {"device": str(archive), "target": str(target)})
    assert x.returncode == 0, x.stderr
    assert diff(snapshot(str(src / "proj")), snapshot(str(target / "proj"))) == []
    assert sorted(os.listdir(target)) == ["proj"]


def test_backup_by_name_reads_names_from_standard_input(tmp_path):
    """AIX's backup -i with no names: one name a line on standard input, only those."""
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("f")
    (tmp_path / "d" / "g").write_text("g")
    archive = tmp_path / "names.bak"
    from conftest import aixsmit

    r = aixsmit("cmd", "backup", "-i", "-f", archive, "-C", tmp_path, input="./d\n./d/g\n")
    assert r.returncode == 0, r.stderr
    t = aixsmit("cmd", "restore", "-T", "-f", archive)
    assert t.stdout.splitlines()[:-2] == [f"{1:>12} ./d/g"]


def test_backup_by_name_refuses_names_out_of_its_directory(tmp_path):
    from conftest import aixsmit

    (tmp_path / "d").mkdir()
    os.symlink("/etc", tmp_path / "d" / "etc")
    for name in ("../x", "etc/passwd", "/etc/passwd", "missing"):
        r = aixsmit("cmd", "backup", "-i", "-f", tmp_path / "x.bak", "-C", tmp_path / "d", name)
        assert r.returncode != 0 and r.stderr.startswith("backup: "), name
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert not (tmp_path / "x.bak").exists()


def test_list_contents_of_a_backup_by_level(tree, tmp_path):
    """A backup by level (GNU tar's incremental format, as backup -0 makes it) is listed too:
    restore -T read only images and said it was not one."""
    src = tmp_path / "fs"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "file").write_text("12345")
    archive = tmp_path / "fs.0.tar"
    subprocess.run(["tar", "--create", f"--file={archive}", "--format=posix", f"--listed-incremental={tmp_path}/snar",
                    "-C", src, "."], check=True)
    t = run_dialog(tree, "listtoc", {"device": str(archive)})
    assert t.returncode == 0, t.stderr
    assert "    Files backed up by inode" in t.stderr.splitlines()
    assert t.stdout.splitlines() == [f"{5:>12} ./dir/file", "The total size is 5 bytes.",
                                     "The number of archived files is 1."]


def test_list_contents_of_a_damaged_backup_is_one_line(tree, tmp_path):
    archive = tmp_path / "cut.bak"
    (tmp_path / "big").write_bytes(os.urandom(200_000))
    subprocess.run(["tar", "--create", f"--file={archive}", "--format=posix", "-C", tmp_path, "./big"], check=True)
    archive.write_bytes(archive.read_bytes()[:100_000])
    t = run_dialog(tree, "listtoc", {"device": str(archive)})
    assert t.returncode == 1
    # the one reader's line, the same list, verify and restore give: what is incomplete and what was lost
    assert t.stderr.splitlines()[-1].startswith(f"restore: {archive} is damaged: ./big: only ")
    assert "Traceback" not in t.stderr
