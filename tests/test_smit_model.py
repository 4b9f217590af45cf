"""Menus as data: every shipped file loads and resolves; broken files name file and line;
command building follows SMIT's rules (aix-smit.md §1.10); smit.log/smit.script formats (§1.11)."""

from __future__ import annotations

import os
import stat

import pytest

from aixsmit.smit import command
from aixsmit.smit.log import SmitLog
from aixsmit.smit.model import MenuError, load_text, load_tree
from aixsmit.smit.services import SERVICES


@pytest.fixture(scope="module")
def tree():
    return load_tree(services=set(SERVICES))


def test_shipped_tree_loads_and_every_reference_resolves(tree):
    assert tree.get("top_menu").title == "System Management"
    # SMIT's titles and fastpaths (aix-smit.md §1.13).
    expect = {
        "storage": "System Storage Management (Physical & Logical Storage)", "lvm": "Logical Volume Manager",
        "vg": "Volume Groups", "savevg": "Back Up a Volume Group", "restvg": "Remake a Volume Group",
        "lsbackvg": "List Files in a Volume Group Backup", "fs": "File Systems",
        "lsmount": "List All Mounted File Systems", "mountfs": "Mount a File System",
        "umountfs": "Unmount a File System", "backsys": "System Backup Manager",
        "mksysb": "Back Up This System to Tape/File", "lsmksysb": "List Files in a System Image",
    }
    for fp, title in expect.items():
        assert tree.get(fp).title == title
    # Every screen is reachable from the top.
    seen, todo = set(), ["top_menu"]
    while todo:
        s = tree.get(todo.pop())
        if s.id in seen:
            continue
        seen.add(s.id)
        todo += [i.next for i in s.items] + ([s.next] if s.next else [])
    opened_by_code = {"walkdone"}  # the guided backup's last step opens it
    assert seen | opened_by_code == set(tree.screens)


def test_each_item_keeps_its_own_help(tree):
    """F1 on Backup a File System showed the holders text: its item had two help: keys."""
    items = {i.label: i.help for i in tree.get("fs").items}
    assert "by level" in items["Backup a File System"]
    assert "busy" in items["List Processes Using a File System"]


def test_unknown_fastpath_is_1800_007(tree):
    with pytest.raises(MenuError, match=r"^1800-007 There are currently no SMIT"):
        tree.get("nosuch")


@pytest.mark.parametrize("text,msg", [
    ("- menu: a\n  title: A\n  items:\n    - {label: X}\n", r"x.yaml: line 4: an item needs label and next"),
    ("- dialog: d\n  title: D\n  command: {linux: [x]}\n  fields:\n    - {name: f, label: F, type: bogus, flag: -f}\n",
     r"x.yaml: line 5: type 'bogus' is not one of"),
    ("- dialog: d\n  title: D\n  command: {linux: [x]}\n  fields:\n    - {name: f, label: F}\n",
     r"x.yaml: line 5: field 'f' needs 'flag', 'emit' or 'arg: positional'"),
    ("- menu: a\n  title: [A\n", r"x.yaml: line 3: "),
    ("- dialog: d\n  title: D\n  command: {linux: [x]}\n  colour: red\n", r"x.yaml: line 1: unknown dialog key 'colour'"),
    ("- dialog: d\n  title: D\n  command: {linux: [x]}\n  fields:\n    - {name: f, label: F, type: yesno, default: maybe, flag: -f}\n",
     r"x.yaml: line 5: default 'maybe' is not one of yes, no"),
    # A key given twice: YAML would keep the last silently (F1 showed another item's help).
    ("- menu: a\n  title: A\n  items:\n    - label: X\n      next: b\n      help: one\n      help: two\n",
     r"x.yaml: line 7: 'help' is given twice in an item \(first at line 6\)"),
    ("- dialog: d\n  title: D\n  title: E\n  command: {linux: [x]}\n", r"x.yaml: line 3: 'title' is given twice in a screen"),
    ("- dialog: d\n  title: D\n  command: {linux: [x]}\n  fields:\n    - {name: f, label: F, flag: -f, flag: -g}\n",
     r"x.yaml: line 5: 'flag' is given twice in a field"),
])
def test_broken_menu_file_names_file_and_line(text, msg):
    with pytest.raises(MenuError, match=msg):
        load_text(text, "x.yaml")


def test_dangling_reference_is_an_error(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("- menu: a\n  title: A\n  items:\n    - {label: X, next: nowhere}\n")
    with pytest.raises(MenuError, match=r"m.yaml: line 4: 'nowhere' is not a defined screen"):
        load_tree([f])


def test_mksysb_command_smit_rules(tree):
    d = tree.get("mksysb")
    # Only the required device and the always-sent -i: defaults are not sent.
    assert command.build(d, {"device": "/backup/sys.mksysb"}, "linux") == \
        ["aixsmit", "cmd", "mksysb", "-i", "/backup/sys.mksysb"]
    # Changed rings become flags, positionals last; --root for Linux when aixsmit has one.
    argv = command.build(d, {"device": "/b/s", "exclude": "yes", "verbose": "yes", "blocks": "128", "newdata": "no"},
                         "linux", root="/mnt/sys")
    assert argv == ["aixsmit", "cmd", "mksysb", "--root", "/mnt/sys", "-e", "-v", "-b", "128", "/b/s"]
    assert command.build(d, {"device": "/dev/rmt0", "map": "yes"}, "aix") == ["mksysb", "-m", "-i", "/dev/rmt0"]
    assert command.display(["aixsmit", "cmd", "mksysb", "/b/my image"]) == "aixsmit cmd mksysb '/b/my image'"


def test_required_and_type_errors(tree):
    d = tree.get("mksysb")
    with pytest.raises(MenuError, match=r'^1820-035 A path or file name must be\nspecified in the entry field for:\n"Backup DEVICE or FILE".'):
        command.build(d, {"device": ""}, "linux")
    with pytest.raises(MenuError, match="must be a number"):
        command.build(d, {"device": "/x", "blocks": "many"}, "linux")
    sv = tree.get("savevg")
    with pytest.raises(MenuError, match=r'^1820-033 A value must be specified'):
        command.build(sv, {"device": "/x"}, "linux")
    assert command.build(sv, {"device": "/x", "vg": "datavg"}, "linux") == ["aixsmit", "cmd", "savevg", "-f", "/x", "-i", "datavg"]


def test_multi_select_positionals(tree):
    d = tree.get("mountg")
    assert command.build(d, {"mounts": "/home /data"}, "linux") == ["aixsmit", "cmd", "mount", "--ledger", "/home", "/data"]
    assert command.build(d, {"ledger": "no", "mounts": "/home"}, "linux") == ["aixsmit", "cmd", "mount", "/home"]


def test_smit_log_and_script_formats(tmp_path):
    log = SmitLog.open(str(tmp_path / "smit.log"), str(tmp_path / "smit.script"))
    log.start()
    log.screen("menu", "fs", "File Systems", fastpath=True)
    log.screen("dialog", "mountfs", "Mount a File System")
    log.command("mount  /home")
    log.output_start()
    log.output(["line 1"])
    log.output_end(7)
    log.exit()
    text = (tmp_path / "smit.log").read_text()
    assert "    Starting SMIT\n" in text
    assert '(Menu screen selected as FastPath,\n\tid          = "fs",\n\tid_seq_num  = "0",\n\tnext_id     = "fs",\n\ttitle       = "File Systems".)' in text
    assert '(Dialogue screen selected,\n\tFastPath    = "mountfs",\n\tid          = "mountfs",\n\ttitle       = "Mount a File System".)' in text
    assert "    Command_to_Execute follows below:\n>> mount  /home\n" in text
    assert "---- start ----\nline 1\n---- end ----" in text and text.rstrip().endswith("Exiting SMIT")
    script = (tmp_path / "smit.script").read_text()
    lines = script.splitlines()
    assert lines[0] == "#" and lines[1].startswith("#     [") and lines[2] == "#" and lines[3] == "mount  /home"
    for name in ("smit.log", "smit.script"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    # Appended, never overwritten.
    SmitLog.open(str(tmp_path / "smit.log"), str(tmp_path / "smit.script")).command("umount /home")
    assert (tmp_path / "smit.script").read_text().startswith(script)


def test_unwritable_log_is_1800_093(tmp_path):
    from aixsmit.errors import AixsmitError

    with pytest.raises(AixsmitError, match=r'^1800-093 Could not open SMIT log file:'):
        SmitLog.open(str(tmp_path / "no" / "such" / "smit.log"), str(tmp_path / "s"))


def test_menus_come_from_the_cache_until_a_file_changes(tmp_path, monkeypatch):
    import shutil

    from aixsmit.smit import model

    menus = tmp_path / "menus"
    shutil.copytree(model.MENU_DIR, menus)
    monkeypatch.setattr(model, "MENU_DIR", menus)
    services = set(SERVICES)
    first = model.load_tree(services=services)
    parse = model.load_text

    def no_parsing(*a, **k):
        raise AssertionError("the menus were parsed although the cache was valid")

    monkeypatch.setattr(model, "load_text", no_parsing)
    cached = model.load_tree(services=services)
    assert cached.screens.keys() == first.screens.keys()
    assert cached.screens["mksysb"].fields == first.screens["mksysb"].fields

    f = menus / "backsys.yaml"
    f.write_text(f.read_text().replace("title: Back Up This System to Tape/File", "title: Back Up This System (edited)"))
    monkeypatch.setattr(model, "load_text", parse)
    assert "(edited)" in model.load_tree(services=services).screens["mksysb"].title
