"""Names someone else chose (a mount point, a destination file name) with a newline, ``;``,
ESC or bytes that are not UTF-8: they reach no terminal raw, shift no column of a record file,
come back exactly from image.data, and fail no backup."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from aixsmit.backup import image_data, octal

from conftest import aixsmit, needs_root

HOSTILE_MP = "/da\nta"
RAW = ("\x1b", "\x07", "\udcff")


def no_raw_controls(text: str) -> bool:
    """Nothing in ``text`` but printable characters, newlines and tabs."""
    return all(c in "\n\t" or c.isprintable() for c in text)


# --- image.data: reversible, never an error -------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\udcff", "\udc80", "\\", "\n", " "]),
                max_size=40)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(names, min_size=1, max_size=4))
def test_every_stanza_value_comes_back_exactly(values):
    stanzas = [("lv_data", {f"K{i}": v for i, v in enumerate(values)}), ("fs_data", {"FS_NAME": values[0]})]
    text = image_data.dump(stanzas)
    assert image_data.parse(text) == stanzas
    assert len(text.splitlines()) == len(values) + 4  # one line a value: nothing forged
    text.encode("utf-8")  # valid UTF-8, whatever the names held


@settings(max_examples=300, deadline=None)
@given(value=names)
def test_a_log_field_is_one_field(value):
    stored = octal.encode(value, ";")
    assert ";" not in stored and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xDC80 <= ord(c) <= 0xDCFF
                                         or c in "\u2028\u2029" for c in stored)
    assert octal.decode(stored) == value


def test_an_aix_value_with_a_plain_backslash_is_read_as_written():
    assert image_data.parse("image_data:\n\tX= C:\\temp\\1x\n")[0][1]["X"] == "C:\\temp\\1x"


# --- the commands --------------------------------------------------------------------------


@pytest.fixture
def hostile_root(troot):
    tr = troot
    tr.loop_mount(HOSTILE_MP)
    tr.p("/usr/bin").mkdir(parents=True)
    tr.p("/usr/bin/tool").write_text("tool")
    tr.out = tr.base / "out"
    tr.out.mkdir()
    return tr


@needs_root
def test_mksysb_i_with_a_newline_in_a_mount_point(hostile_root):
    from aixsmit.backup import archive

    tr = hostile_root
    img = tr.out / "a.mksysb"
    r = aixsmit("cmd", "mksysb", "-i", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "internal error" not in r.stderr
    info = archive.read_info(str(img))
    assert HOSTILE_MP in [fs["FS_NAME"] for fs in image_data.every(info.stanzas, "fs_data")]
    assert HOSTILE_MP in [lv["MOUNT_POINT"] for lv in image_data.every(info.stanzas, "lv_data")]
    listing = aixsmit("cmd", "lsmksysb", "-l", "-f", img, env=tr.env())
    assert listing.returncode == 0 and "closed/syncd  /da\\012ta" in listing.stdout
    assert "\nta\n" not in listing.stdout  # no line of its own for the name's second half


@needs_root
def test_mksysb_without_i_says_how_to_make_image_data(hostile_root):
    tr = hostile_root
    r = aixsmit("cmd", "mksysb", "--root", tr.path, tr.out / "b.mksysb", env=tr.env())
    assert r.returncode == 3
    assert "0512-004" in r.stderr and "-i" in r.stderr.split("0512-004", 1)[1]


@needs_root
def test_sysbackup_skip_busy_with_a_newline_name_backs_up_and_escapes_once(hostile_root):
    tr = hostile_root
    tr.hold(tr.p(HOSTILE_MP))
    r = aixsmit("cmd", "sysbackup", "--skip-busy", "--root", tr.path, tr.out / "c.mksysb", env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  Result:           OK" in r.stdout
    assert "/da\\012ta is busy" in r.stdout and "\\134" not in r.stdout + r.stderr


@needs_root
def test_a_destination_name_with_bytes_esc_semicolon_and_newline(hostile_root):
    tr = hostile_root
    assert aixsmit("cmd", "mksysb", "-i", "--root", tr.path, tr.out / "plain.mksysb", env=tr.env()).returncode == 0
    bad = os.fsdecode(os.fsencode(tr.out) + b"/bad\xff;x;y\n\x1b]0;PWN\x07\x1b[2J.mksysb")
    r = aixsmit("cmd", "mksysb", "--root", tr.path, bad, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "internal error" not in r.stderr
    assert no_raw_controls(r.stdout + r.stderr) and not any(c in r.stdout + r.stderr for c in RAW)
    assert "bad\\377;x;y\\012\\033]0;PWN\\007\\033[2J.mksysb does not appear to be a tape device" in r.stdout
    assert os.path.isfile(os.fsencode(bad))

    log = (tr.base / "state" / "vgbackuplog").read_bytes()
    log.decode("utf-8")  # the record file is text, whatever the name
    assert log.count(b"\n") == 2  # one record an image: the newline forged none
    listing = aixsmit("cmd", "lsmksysb", "-B", env=tr.env())
    assert listing.returncode == 0 and no_raw_controls(listing.stdout)
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 2
    for row in rows:  # the ';' in a name shifts no column: each row ends in its command, VG and result
        assert row.split()[1] == "mksysb" and row.split()[-2:] == ["rootvg", "OK"]
    assert rows[1].startswith(os.path.join(str(tr.out), "bad\\377;x;y\\012\\033]0;PWN\\007\\033[2J.mksysb"))

    # A level backup of the file system with the newline, to such a name: one line says so.
    r = aixsmit("cmd", "backup", "-0", "-f", bad + ".0", HOSTILE_MP, "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert no_raw_controls(r.stdout + r.stderr) and not any(c in r.stdout + r.stderr for c in RAW)
    assert "backup: Backing up /da\\012ta to " in r.stdout and "\\012\\033]0;PWN\\007\\033[2J.mksysb.0." in r.stdout


# --- the TUI, in a real terminal -------------------------------------------------------------

PLANTED = "x\x1b]0;PWN\x07\x1b[2J\nb.mksysb"


def _pane_title(name: str) -> str:
    import subprocess

    return subprocess.run(["tmux", "display", "-p", "-t", name, "#{pane_title}"], capture_output=True, text=True).stdout


@needs_root
@pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("setpriv") is None, reason="needs tmux and setpriv")
def test_a_planted_image_name_in_f4_f6_and_smit_script(tmp_path):
    """Another user plants an image name holding a title sequence, a clear-screen sequence and
    a newline in a folder F4 searches (beside --root). mksysb's F4 list, the field, F6 and
    smit.script show it made visible; the terminal's title and screen stay as they were; the
    command kept in smit.script, run by a shell, gives back exactly the name."""
    import shlex
    import subprocess
    import sys
    import tempfile

    from test_tmux_e2e import Tmux

    shared = tempfile.mkdtemp(prefix="ax", dir="/tmp")  # short: the list's row keeps the name on one line
    try:
        os.chmod(shared, 0o777)  # writable by all, no sticky bit
        root = os.path.join(shared, "root")
        os.mkdir(root)
        planted = os.path.join(shared, PLANTED)
        subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "touch", planted], check=True)
        env = {"AIXSMIT_STATE_DIR": str(tmp_path / "state"), "AIXSMIT_HOST": "linux", "HOME": str(tmp_path),
               "TERM": "xterm-256color", "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        name = f"aixsmit-planted-{os.getpid()}"
        t = Tmux(name, f"{shlex.quote(sys.executable)} -m aixsmit -x --root {shlex.quote(root)} mksysb", env, width=100)
        try:
            t.wait_for("[Entry Fields]")
            before = _pane_title(name)
            t.keys("F4")
            s = t.wait_for(" MB ")
            assert "/x\\033]0;PWN\\007\\033[2J\\012b.mksysb" in s
            assert "PWN" not in _pane_title(name) and _pane_title(name) == before
            assert "Back Up This System to Tape/File" in s  # the screen was not cleared under the list
            t.type("/")
            t.wait_for("Enter Search Pattern")
            t.type("b.mksysb")
            t.keys("Enter")
            t.wait_gone("Enter Search Pattern")
            t.keys("Enter")  # pick it
            t.wait_gone(" MB ")
            s = t.screen()
            assert "/x\u241b]" in s and "PWN" not in _pane_title(name)  # the field draws ESC as its picture
            t.keys("F6")
            s = t.wait_for("SHOW COMMAND STRING")
            assert f"$'{shared}/x\\033]0;PWN\\007\\033[2J\\012b.mksysb'" in "".join(s.split("\n"))
            assert "PWN" not in _pane_title(name)
            t.keys("Enter")
            t.wait_gone("SHOW COMMAND STRING")
            t.keys("Enter")  # -x: the command is logged, not run
            t.wait_for("Command has been logged to script file")
            assert "PWN" not in _pane_title(name)
        finally:
            t.kill()
        script = (tmp_path / "smit.script").read_bytes()
        assert b"\x1b" not in script and b"\x07" not in script
        line = [l for l in script.decode().splitlines() if l.startswith("aixsmit cmd mksysb")][-1]
        got = subprocess.run(["bash", "-c", f'set -- {line}; printf "%s" "${{@: -1}}"'], capture_output=True).stdout
        assert got == os.fsencode(planted)
    finally:
        subprocess.run(["rm", "-rf", shared])


# --- the TUI, driven with Pilot: what every widget holds ------------------------------------

def _raw_on_screen(app) -> list[str]:
    """Texts held by the widgets of every screen on the stack that carry a character a terminal
    acts on (ESC, BEL, other C0/C1 controls but newline) or a byte that is not UTF-8."""
    from textual.widgets import Input, OptionList, Static, TextArea

    bad = []
    for screen in app.screen_stack:
        for w in screen.query("*"):
            if isinstance(w, Static):
                texts = [str(w.render())]
            elif isinstance(w, Input):  # its value is the name itself: what it draws counts
                texts = ["".join(seg.text for seg in w.render_line(0))]
            elif isinstance(w, TextArea):
                texts = ["".join(seg.text for seg in w.render_line(y)) for y in range(w.size.height)]
            elif isinstance(w, OptionList):
                texts = [str(o.prompt) for o in w.options]
            else:
                continue
            bad += [t for t in texts if any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0
                                            or 0xDC80 <= ord(c) <= 0xDCFF for c in t)]
    return bad


@needs_root
async def test_a_hostile_mount_point_in_the_guide_f6_and_the_umount_list(troot, tmp_path):
    from aixsmit.tui.popups import ListPopup, MessagePopup
    from tui_helpers import make, typed, until

    tr = troot
    odd = "/srv/e\x1b]0;PWN\x07\x1b[2Jx\udcff"
    tr.loop_mount(odd)
    out = tr.base / "out"
    out.mkdir()
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        walk = app.screen
        assert "/srv/e\\033]0;PWN\\007\\033[2Jx\\377" in str(walk.query_one("#facts").render())  # step 1
        assert _raw_on_screen(app) == []
        await pilot.press("enter")
        await pilot.pause()
        planted = str(out / "i\x1b]0;PWN\x07.mksysb")  # F4 finds images beside --root
        open(planted, "w").close()
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, ListPopup) and not app.screen.building)
        assert _raw_on_screen(app) == []
        app.screen.query_one("OptionList").highlighted = [v for v, _ in app.screen.items].index(planted)
        await pilot.press("enter")
        await pilot.pause()
        assert walk.query_one("#dest").value == planted and _raw_on_screen(app) == []
        await pilot.press("enter")
        await pilot.pause()
        assert walk.dest == planted and walk.argv()[-1] == planted
        assert "\\033]0;PWN" in str(walk.query_one("#facts").render())  # steps 3-7: what it unmounts
        assert _raw_on_screen(app) == []
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and _raw_on_screen(app) == []
        await pilot.press("escape", "3")
        await pilot.pause()
        app.open("umountfs")
        await pilot.pause()
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, ListPopup) and not app.screen.building)
        assert any("\\033]0;PWN" in str(o.prompt) for o in app.screen.query_one("OptionList").options)
        assert _raw_on_screen(app) == []
        await pilot.press("enter")  # pick it: the field shows it visible, the command gets the name
        await pilot.pause()
        assert _raw_on_screen(app) == []
        assert app.screen.values()["mount"] == odd
        await pilot.press("f7")  # the larger window draws it safely too, and gives it back as it was
        await pilot.pause(0.3)
        assert app.screen.query("TextArea") and _raw_on_screen(app) == []
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.values()["mount"] == odd
        await pilot.press("f6")
        await pilot.pause()
        assert "$'/srv/e\\033]0;PWN\\007\\033[2Jx\\377'" in app.screen.message and _raw_on_screen(app) == []
