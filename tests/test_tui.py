"""The TUI driven with Pilot: every screen type and key (aix-smit.md §1), COMMAND STATUS on a
real mksysb, streaming without stalling the event loop."""

from __future__ import annotations

import sys
import time

from aixsmit.tui.popups import ListPopup, MessagePopup
from aixsmit.tui.screens import CommandStatusScreen, DialogScreen, MenuScreen, TooSmallScreen

from conftest import aixsmit, needs_root
from tui_helpers import loop_gaps, make, text, typed, until


async def test_menu_screen_exact_texts_and_navigation(tmp_path):
    app = make(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = text(app).splitlines()
        assert lines[0].strip() == "System Management"
        assert lines[2].strip() == "Move cursor to desired item and press Enter."
        assert lines[4] == "  Guided System Backup (first time)".ljust(80)
        assert lines[5] == "  System Storage Management (Physical & Logical Storage)".ljust(80)
        # aix-smit.md §1.6: the menu footer, four 20-column cells a row.
        assert lines[-2].rstrip() == "F1=Help             F2=Refresh          F3=Cancel           F8=Image"
        assert lines[-1].rstrip() == "F9=Shell            F10=Exit            Enter=Do"
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.screen.definition.id == "storage"
        await pilot.press("down", "down", "down", "enter")  # past File Systems and Files & Directories, as in SMIT
        await pilot.pause()
        assert app.screen.definition.id == "backsys"
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.definition.id == "storage"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "CONTEXTUAL HELP" in text(app)
        assert "Back up the system (mksysb)" in text(app)  # the item still highlighted
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, MenuScreen)


async def test_esc_digit_equals_function_key(tmp_path):
    app = make(tmp_path, "fs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("escape", "1")  # Esc+1 = F1
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "CONTEXTUAL HELP" in text(app)
        await pilot.press("escape", "3")  # Esc+3 = F3 closes the pop-up
        await pilot.pause()
        assert isinstance(app.screen, MenuScreen)
        await pilot.press("alt+0")  # a fast Esc 0 arrives as alt+0: F10
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "EXIT" in text(app)
        assert "Press Enter to exit the application." in text(app)
        await pilot.press("f3")
        await pilot.pause()
        # A digit long after Esc is just a digit.
        app._esc_at = time.monotonic() - 10
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, MenuScreen)


async def test_esc_footer_labels(tmp_path):
    app = make(tmp_path, "mksysb", esc_labels=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = text(app).splitlines()
        assert lines[-3].rstrip() == "Esc+1=Help          Esc+2=Refresh       Esc+3=Cancel        Esc+4=List"
        assert lines[-1].rstrip() == "Esc+9=Shell         Esc+0=Exit          Enter=Do"


async def test_dialog_screen_texts_f6_f5_cancel(tmp_path):
    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = text(app).splitlines()
        assert t[2].strip() == "Type or select values in entry fields."
        assert t[3].strip() == "Press Enter AFTER making all desired changes."
        assert t[5].index("[Entry Fields]") == 55
        row = next(l for l in t if "Backup DEVICE or FILE" in l)
        # Typeable values in brackets from column 52, ring values without them from 53, markers last.
        assert row.startswith("* Backup DEVICE or FILE") and row[52] == "[" and row.rstrip().endswith("+/")
        assert next(l for l in t if "Create MAP files?" in l)[53:55] == "no"
        await typed(pilot, "/backup/sys.mksysb")
        await pilot.press("down", "tab")  # Tab cycles a ring: Create MAP files? yes
        await pilot.press("f6")
        await pilot.pause()
        assert "SHOW COMMAND STRING" in text(app)
        assert "aixsmit cmd mksysb -m -i /backup/sys.mksysb" in text(app)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f5")  # reset the ring to its default
        await pilot.press("f6")
        await pilot.pause()
        assert "aixsmit cmd mksysb -i /backup/sys.mksysb" in text(app)
        await pilot.press("enter", "f3")  # values were changed: CANCEL asks first
        await pilot.pause()
        assert "WARNING: Cancellation will cause a loss of all" in text(app)
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, DialogScreen)


async def test_required_field_error(tmp_path):
    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert "ERROR MESSAGE" in text(app)
        assert "1820-035 A path or file name must be" in text(app)


@needs_root
async def test_f4_single_list_from_service_and_are_you_sure(troot, tmp_path):
    troot.loop_mount("/home")
    app = make(tmp_path, "umountfs", root=str(troot.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, ListPopup) and not app.screen.building)
        assert "Move cursor to desired item and press Enter." in text(app)
        assert "/home" in text(app) and "ext4" in text(app)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f6")
        await pilot.pause()
        assert f"aixsmit cmd umount --root {troot.path} /home" in app.screen.message


@needs_root
async def test_f4_multi_select_with_f7(troot, tmp_path):
    tr = troot
    tr.p("/etc/fstab").write_text("/dev/nonexistent1 /srv/a ext4 defaults 0 2\n/dev/nonexistent2 /srv/b ext4 defaults 0 2\n")
    app = make(tmp_path, "mountg", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "f4")
        await until(pilot, lambda: isinstance(app.screen, ListPopup) and not app.screen.building)
        assert "ONE OR MORE items can be selected." in text(app)
        await pilot.press("f7", "down", "f7", "enter")
        await pilot.pause()
        await pilot.press("f6")
        await pilot.pause()
        assert f"aixsmit cmd mount --root {tr.path} --ledger /srv/a /srv/b" in app.screen.message


async def test_ring_f4_and_list_find(tmp_path):
    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "f4")
        await pilot.pause()
        assert isinstance(app.screen, ListPopup)
        await pilot.press("slash")
        await pilot.pause()
        assert "Enter Search Pattern." in text(app)
        await typed(pilot, "no")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DialogScreen)
        assert app.screen.values()["map"] == "no"


async def test_are_you_sure_on_ask_dialog(tmp_path):
    app = make(tmp_path, "umountg", no_run=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert "ARE YOU SURE?" in text(app)
        assert "Continuing may delete information you may want" in text(app)
        await pilot.press("enter")
        await pilot.pause()
        # -x: logged, not run.
        assert "Command has been logged to script file." in text(app)
    assert "aixsmit cmd umount --all-user" in (tmp_path / "smit.script").read_text()
    assert "(SMIT -x CommandString flag set)" in (tmp_path / "smit.log").read_text()


async def test_f8_image_and_f9_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("SMIT_SHELL", "n")
    app = make(tmp_path, "backsys")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f8")
        await pilot.pause()
        assert "PRINT SCREEN" in text(app) and '"backsys"' in text(app)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f9")
        await pilot.pause()
        assert "The Shell function is not available for this" in text(app)
    log = (tmp_path / "smit.log").read_text()
    assert "\f---------- start of screen ----------" in log and "System Backup Manager" in log


async def test_selector_leads_to_direct_dialog(tmp_path, monkeypatch):
    monkeypatch.setenv("AIXSMIT_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("")
    app = make(tmp_path, "lsvg1")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "Type or select a value for the entry field." in text(app)
        await typed(pilot, "rootvg")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        assert "Command: OK" in text(app)
        assert "LV NAME             TYPE" in text(app)


async def test_too_small_terminal(tmp_path):
    app = make(tmp_path)
    async with app.run_test(size=(70, 20)) as pilot:
        await pilot.pause(0.2)
        assert isinstance(app.screen, TooSmallScreen)
        assert "1800-005 SMIT requires a minimum of 24 line by 80 column output" in text(app)  # wrapped at 70
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert isinstance(app.screen, MenuScreen)
        # A screen that comes while the terminal is too small (a command's end, a pop-up) goes
        # under the message, and is there once the terminal is large enough again.
        await pilot.resize_terminal(70, 20)
        await pilot.pause(0.2)
        assert isinstance(app.screen, TooSmallScreen)
        app.push_screen(MessagePopup("INFORMATION MESSAGE", "came meanwhile"))
        await pilot.pause(0.2)
        assert isinstance(app.screen, TooSmallScreen) and "1800-005" in text(app)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert isinstance(app.screen, MessagePopup) and "came meanwhile" in text(app)
        assert not any(isinstance(s, TooSmallScreen) for s in app.screen_stack)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MenuScreen)


def test_unknown_fastpath_cli():
    r = aixsmit("nosuchpath")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == "1800-007 There are currently no SMIT"


@needs_root
async def test_mksysb_from_the_dialog_to_command_ok(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    for i in range(500):
        tr.p(f"/home/f{i}").write_text(str(i))
    out = tr.base / "out"
    out.mkdir()
    app = make(tmp_path, "mksysb", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await typed(pilot, str(out / "sys.mksysb"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        screen = app.screen
        t = text(app)
        assert t.splitlines()[0].strip() == "COMMAND STATUS"
        assert "Command: OK            stdout: yes           stderr: no" in t
        assert "Before command completion, additional instructions may appear below." in t
        assert "0512-038 mksysb: Backup Completed Successfully." in t
        row = next(l for l in t.splitlines() if l.startswith("[") and "files" in l)
        total = next(int(l.split()[2]) for l in t.splitlines() if l.startswith("Backing up "))
        assert row.startswith("[" + "\u2588" * 16 + f"] 100%  {total}/{total} files"), row
        assert "of" in t and "files" in t
        await pilot.press("slash")
        await pilot.pause()
        await typed(pilot, "Completed")
        await pilot.press("enter")
        await pilot.pause()
        assert "[line" in text(app)
    assert (out / "sys.mksysb").exists()
    script = (tmp_path / "smit.script").read_text()
    assert f"aixsmit cmd mksysb --root {tr.path} -i {out / 'sys.mksysb'}" in script
    log = (tmp_path / "smit.log").read_text()
    assert "---- start ----" in log and "0512-038 mksysb: Backup Completed Successfully." in log


async def test_f3_cancels_a_running_command(tmp_path):
    """F3 on a running command asks, then stops its whole process group (the image side of a
    cancelled mksysb - 0512-007 and no image - is tested in test_engine_real)."""
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="slow", title="Slow", command={"linux": ["sh"]})
    argv = ["sh", "-c", "echo started; sleep 600 & wait"]
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, argv, progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and app.screen.stdout_seen)
        screen = app.screen
        assert screen.running and "Command: running" in text(app)
        assert "F3=Cancel" in text(app) and "F6=Command" not in text(app)  # while running
        from textual.widgets import Log

        pane = screen.query_one(Log).region
        await pilot.press("f3")
        await pilot.pause()
        assert "The command is still running." in text(app)
        await pilot.press("enter")
        await until(pilot, lambda: not screen.running, timeout=15)
        await pilot.pause(0.1)
        assert "Command: failed" in text(app)
        # The finished screen's three rows of keys took rows kept blank while it ran: the
        # output pane has not moved or shrunk.
        assert "F6=Command" in text(app) and "F10=Exit" in text(app) and "n=Find Next" in text(app)
        assert screen.query_one(Log).region == pane


async def test_streaming_200k_lines_never_stalls_the_loop(tmp_path):
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    n = 200_000
    d = Def(kind="dialog", id="flood", title="Flood", command={"linux": [sys.executable]})
    argv = [sys.executable, "-c", f"import sys\nfor i in range({n}): sys.stdout.write(f'line {{i}} of output\\n')"]
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        gaps = loop_gaps(app, 0.01)
        app.push_screen(CommandStatusScreen(d, argv, progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running
                    and app.screen.lines_total == n, timeout=120)
        await pilot.pause(0.2)
        ticks = list(gaps)  # the app's own; not the screenshots read below (tens of ms each)
        assert "Command: OK" in text(app)
        assert f"line {n - 1} of output" in text(app)
    worst = max(ticks[5:])  # the first ticks include start-up
    assert worst < 0.05 + 0.01, f"the event loop stalled for {worst * 1000:.0f} ms"


async def test_the_end_is_drawn_as_soon_as_it_is_known(tmp_path):
    """The frame with "Command: OK" and the last line is drawn when the end is seen, not at
    Textual's next frame tick (up to 17 ms later): by the time the app hears the command
    finished, that frame has been drawn."""
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="quick", title="Quick", command={"linux": [sys.executable]})
    frames: list[str] = []  # COMMAND STATUS's status at each frame drawn
    at_end: list[list[str]] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        display, finished = app._display, app.command_finished

        def drawn(screen, update):
            if isinstance(screen, CommandStatusScreen) and update is not None:
                frames.append(screen.status + "|" + "|".join(map(str, screen.query_one("#output").lines[-3:])))
            display(screen, update)

        def ended(screen, final):
            at_end.append(list(frames))
            finished(screen, final)

        app._display, app.command_finished = drawn, ended
        # Output that comes with the end, and a last line that comes alone after a pause, into
        # a pane already drawn.
        for code in ("print('first'); print('last')",
                     "import time\nfor i in range(6000): print(f'line {i}')\ntime.sleep(0.3); print('last')"):
            frames.clear()
            at_end.clear()
            app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", code], progress=False))
            await until(pilot, lambda: at_end)
            assert at_end[0], "no frame of COMMAND STATUS was drawn"
            assert at_end[0][-1].startswith("OK|") and "|last" in at_end[0][-1]
            await pilot.press("f3")
            await pilot.pause()


async def test_an_end_under_a_popup_shows_when_the_popup_closes(tmp_path):
    """The end drawn at once is for the screen on top: a command ending while F10's EXIT
    question covers COMMAND STATUS shows its end once the question is put away."""
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="later", title="Later", command={"linux": ["sh"]})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, ["sh", "-c", "echo begun; sleep 1; echo the end"], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and app.screen.stdout_seen)
        screen = app.screen
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "still running" in text(app)
        await until(pilot, lambda: not screen.running, timeout=15)
        await pilot.press("f3")  # back to the application
        await pilot.pause(0.2)
        assert app.screen is screen
        assert "Command: OK" in text(app) and "the end" in text(app)


async def test_a_full_pane_shows_the_newest_lines(tmp_path):
    """Past its 5,000 lines the pane drops its oldest as new ones come, and keeps its size and
    scroll position: Textual's Log then repainted only part of it, and the screen went on
    showing older lines (measured: lines 179,002-179,014 on screen at the end of 200,000)."""
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="full", title="Full", command={"linux": [sys.executable]})
    # 10,000 lines in ten bursts, two ticks of the screen apart (it takes at most 1,000 a tick),
    # then five more on their own, and the end a while later.
    code = ("import sys, time\nfor b in range(10):\n    for i in range(1000): print(f'line {b * 1000 + i}')\n"
            "    sys.stdout.flush(); time.sleep(0.12)\n"
            "for i in range(5): print(f'tail {i}')\nsys.stdout.flush(); time.sleep(0.4)")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", code], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        shown = [l.strip() for l in text(app).splitlines()]
        assert len(app.screen.query_one("#output").lines) == CommandStatusScreen.MAX_LINES
        assert [l for l in shown if l.startswith(("line ", "tail "))][-6:] == ["line 9999"] + [f"tail {i}" for i in range(5)]


async def test_f7_edits_a_value_in_a_larger_window(tmp_path):
    """aix-smit.md §1.6: F7 (Esc+7) edits the field in a larger window; Enter puts it back."""
    from aixsmit.tui.edit import EditPopup

    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        long = "/backup/" + "/".join(f"level{i}" for i in range(12)) + "/sys.mksysb"  # wider than the field
        await typed(pilot, long[:-7])
        await pilot.press("escape", "7")
        await pilot.pause()
        assert isinstance(app.screen, EditPopup)
        assert "Backup DEVICE or FILE" in text(app)
        assert "level11" in text(app)  # the whole value in view, wrapped
        await typed(pilot, ".mksysb")
        await pilot.press("enter")  # commits: no line break in a value
        await pilot.pause()
        assert isinstance(app.screen, DialogScreen)
        assert app.screen.values()["device"] == long
        await pilot.press("f7")
        await pilot.pause()
        await pilot.press("f3")  # cancel leaves the value as it was
        await pilot.pause()
        assert app.screen.values()["device"] == long


async def test_long_output_shows_top_more_bottom_markers(tmp_path):
    """aix-smit.md §1.2 and §1.10: output longer than the screen shows [TOP], [MORE...nn] and
    [BOTTOM]; a short one shows none."""
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="long", title="Long", command={"linux": [sys.executable]})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", "print('short')"], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        await pilot.pause(0.1)
        assert "short" in text(app) and "[BOTTOM]" not in text(app) and "[TOP]" not in text(app)
        await pilot.press("f3")
        await pilot.pause()

        app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", "for i in range(100): print(f'line {i}')"],
                                            progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        await pilot.pause(0.2)
        lines = [l.strip() for l in text(app).splitlines()]
        above = next(l for l in lines if l.startswith("[MORE..."))
        hidden = int(above.strip()[len("[MORE..."):-1])
        assert "line 99" in text(app) and f"line {hidden - 1}" not in text(app) and f"line {hidden}" in text(app)
        assert "[BOTTOM]" in lines
        await pilot.press("home")
        await pilot.pause(0.2)
        lines = [l.strip() for l in text(app).splitlines()]
        assert "[TOP]" in lines and "line 0" in lines
        assert any(l.startswith("[MORE...") for l in lines) and "[BOTTOM]" not in lines


def test_one_line_statics_are_set_only_when_their_text_changes():
    """COMMAND STATUS sets its status line and output markers on every 50 ms tick; each
    Static.update() used to lay out the whole screen again. Now only a changed text is set,
    and without a layout (a one-line Static keeps its size)."""
    from aixsmit.tui.screens import _show

    class Line:
        def __init__(self):
            self.calls = []

        def update(self, content, layout=True):
            self.calls.append((content, layout))

    line = Line()
    for shown in ["Command: running", "Command: running", "Command: running", "Command: OK", "Command: OK"]:
        _show(line, shown)
    assert line.calls == [("Command: running", False), ("Command: OK", False)]


async def test_the_cursor_stays_on_a_field_past_either_end(tmp_path):
    # Down past the last field or Up above the first left no field focused, and Enter then did
    # nothing. The cursor stops at the ends, as in smitty, and Enter runs the dialog.
    from aixsmit.tui.screens import FieldRow

    app = make(tmp_path, "mksysb", no_run=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await typed(pilot, "/backup/sys.mksysb")
        rows = app.screen.rows()
        for key in ("down", "up"):
            for _ in range(len(rows) + 3):
                await pilot.press(key)
                await pilot.pause()
                assert app.screen.focused_row() is not None, key
            assert app.screen.focused_row() is rows[-1 if key == "down" else 0]
        await pilot.press("pagedown")
        assert app.screen.focused_row() is rows[-1]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "aixsmit cmd mksysb -i /backup/sys.mksysb" in app.screen.message


# A command that reports progress as aixsmit's engine does: few files, most bytes in the first.
PROGRESS_CMD = ("import sys, time\nprint('Backing up 40 files')\n"
                "for i in range(60): print(f'output line {i} ' + 'x' * 100)\n"
                "print('4 of 40 files backed up (10%) 75000000 of 100000000 bytes', flush=True)\n"
                "time.sleep(1.5)\n"
                "print('4 of 40 files backed up (10%) 75000000 of 100000000 bytes', flush=True)\n"
                "time.sleep(30)\n")


async def _progress_screen(app, pilot):
    from aixsmit.smit.model import Screen as Def

    d = Def(kind="dialog", id="prog", title="Progress", command={"linux": [sys.executable]}, progress="backup")
    app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", PROGRESS_CMD], progress=True))
    await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and app.screen.lines_total >= 60
                and app.screen.files_total == 40)
    await pilot.pause(2.0)
    return app.screen


async def test_progress_moves_with_bytes_and_is_not_repeated_in_the_pane(tmp_path):
    app = make(tmp_path, "fs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = await _progress_screen(app, pilot)
        row = next(l for l in text(app).splitlines() if "files" in l and "[" in l)
        # By bytes: three quarters of the bar, though a tenth of the files.
        assert row.startswith("[" + "\u2588" * 12 + "\u2591" * 4 + "]  75%  4/40 files  71/95 MB"), row
        assert "ETA 0:0" in row and len(row.rstrip()) < 80
        assert not any("of 40 files backed up" in l for l in screen.query_one("#output").lines)
        screen.action_cancel()
        await pilot.press("enter")
        await until(pilot, lambda: not screen.running, timeout=15)
    assert "of 40 files backed up" not in (tmp_path / "smit.log").read_text()


def _cp437(ch: str) -> bool:
    try:
        ch.encode("cp437")
        return True
    except UnicodeEncodeError:
        return False


async def test_the_linux_console_gets_only_glyphs_its_font_has(tmp_path, monkeypatch):
    # TERM=linux: the bar and the scroll bars used glyphs the console's CP437 font lacks.
    monkeypatch.setenv("TERM", "linux")
    for ascii_only in (False, True):
        app = make(tmp_path, "fs", ascii_only=ascii_only)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = await _progress_screen(app, pilot)
            shown = text(app)
            assert "75%" in shown and "[MORE..." in shown  # the bar and an overflowing pane
            odd = {c for c in shown if not (c.isascii() if ascii_only else _cp437(c))}
            assert not odd, odd
            screen.action_cancel()
            await pilot.press("enter")
            await until(pilot, lambda: not screen.running, timeout=15)


async def test_long_lines_show_they_go_on_and_scroll_sideways(tmp_path):
    # COMMAND STATUS cut lines at column 80 without a sign; the footer did not say Right/Left scroll.
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="wide", title="Wide", command={"linux": ["sh"]})
    wide = "0506-349 Cannot unmount /home/a/rather/long/mount/point/name: The requested resource is busy."
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, ["printf", "%s\\nshort\\n", wide], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        rows = text(app).splitlines()
        row = next(r for r in rows if r.startswith("0506-349"))
        width = app.screen.query_one("#output").scrollable_content_region.width
        assert width >= 78 and row[:width] == wide[:width - 1] + "\u00bb"
        assert next(r for r in rows if r.startswith("short")).rstrip() == "short"
        assert "Left/Right=Scroll" in text(app)
        for _ in range(20):
            await pilot.press("right")
        await pilot.pause()
        row = next(r for r in text(app).splitlines() if "busy." in r)
        assert row.startswith("\u00ab") and row.rstrip().endswith("resource is busy.")


@needs_root
async def test_lsmount_shows_each_class_at_80_columns(troot, tmp_path):
    troot.loop_mount("/home")
    app = make(tmp_path, "lsmount", root=str(troot.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        shown = text(app)
        assert "  user:    /home" in shown and "  system:  /" in shown
    # sysonly's verdict, below its table, within 80 columns too.
    out = aixsmit("cmd", "sysonly", "--root", troot.path, env=troot.env()).stdout
    verdict = out[out.index("User file systems are still mounted"):].splitlines()
    assert "/home" in verdict[0] and all(len(l) < 80 for l in verdict)


async def test_search_home_and_pgup_reach_the_whole_output(tmp_path):
    # The pane keeps the newest 5,000 lines; / found nothing older, Home stopped at the pane's top.
    from aixsmit.smit.model import Screen as Def

    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="long", title="Long", command={"linux": [sys.executable]})
    code = "for i in range(12000): print(f'member {i} of the image')"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", code], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        screen = app.screen
        assert "member 11999 of the image" in text(app) and "[MORE...119" in text(app)

        def first_shown():
            return next(l for l in text(app).splitlines() if l.startswith("member ")).split()[1]

        await pilot.press("slash")
        await pilot.pause()
        await typed(pilot, "member 7 ")
        await pilot.press("enter")
        await until(pilot, lambda: "[line 8]" in text(app))
        assert "member 7 of the image" in text(app)
        await pilot.press("n")  # the only other match: none; it wraps to the same line
        await until(pilot, lambda: "[line 8]" in text(app))
        await pilot.press("end")
        await until(pilot, lambda: "member 11999 of the image" in text(app))
        await pilot.press("home")
        await until(pilot, lambda: first_shown() == "0")
        assert "[TOP]" in text(app) and "[MORE...11" in text(app)
        await pilot.press("end")
        await until(pilot, lambda: "member 11999 of the image" in text(app) and "[BOTTOM]" in text(app))
        # PgUp past the pane's top reads the older lines in.
        screen.query_one("#output").scroll_home(animate=False)
        await pilot.pause()
        top = int(first_shown())
        assert top == 12000 - CommandStatusScreen.MAX_LINES
        await pilot.press("pageup")
        await until(pilot, lambda: int(first_shown()) < top)
        assert int(first_shown()) == top - screen.query_one("#output").size.height


async def test_a_failed_read_of_the_output_is_said_and_home_works_after(tmp_path, monkeypatch):
    # A read of the job's log that failed with anything but OSError left the pane marked busy
    # for good: Home, PgUp and / did nothing any more.
    from aixsmit.jobs.outputlog import LineIndex
    from aixsmit.smit.model import Screen as Def

    real_search = LineIndex.search

    def broken(self, needle, after):
        raise ValueError("index\nbroken")

    monkeypatch.setattr(LineIndex, "search", broken)
    app = make(tmp_path, "fs")
    d = Def(kind="dialog", id="long", title="Long", command={"linux": [sys.executable]})
    n = CommandStatusScreen.MAX_LINES + 1000
    code = f"for i in range({n}): print(f'member {{i}} of the image')"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(CommandStatusScreen(d, [sys.executable, "-c", code], progress=False))
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        screen = app.screen
        await pilot.press("slash")
        await pilot.pause()
        await typed(pilot, "member 7 ")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessagePopup))
        said = app.screen.message.split("\n\n")[0]
        assert said == f"{screen.job.log}: cannot read the output: index broken"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is screen)
        monkeypatch.setattr(LineIndex, "search", real_search)
        await pilot.press("home")
        await until(pilot, lambda: "[TOP]" in text(app) and "member 0 of the image" in text(app))


async def test_f4_shows_at_once_and_the_screen_stays_live_while_the_list_is_built(tmp_path, monkeypatch):
    # The destination list was built on the screen's own thread: with --root on a full system
    # the screen froze for minutes.
    from aixsmit.smit import services

    def slow(system):
        time.sleep(1.5)
        return [services.ListItem("/backup/a.mksysb", "/backup/a.mksysb   12 MB")]

    monkeypatch.setitem(services.SERVICES, "backup_destinations", slow)
    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        gaps = loop_gaps(app, 0.02)
        await pilot.press("f4")
        await pilot.pause(0.1)
        # The app's own ticks, not the screenshots the test reads (tens of ms each, on this loop).
        live = gaps[2:]
        assert isinstance(app.screen, ListPopup) and "Building the list ..." in text(app)
        mark = len(gaps) + 1  # past the tick that waited for the screenshot
        await until(pilot, lambda: not app.screen.building)
        live += gaps[mark:]
        assert "/backup/a.mksysb   12 MB" in text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.values()["device"] == "/backup/a.mksysb"
    assert live and max(live) < 0.25


def test_image_lists_are_bounded_and_fields_get_what_they_take(tmp_path, monkeypatch):
    import os

    from aixsmit.fs.table import System
    from aixsmit.smit import services

    monkeypatch.setattr(services, "image_dirs", lambda system: [str(tmp_path / "top")])
    top = tmp_path / "top"
    (top / "out").mkdir(parents=True)
    (top / "out" / "sys.mksysb").write_text("x")
    deep = top / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "deep.mksysb").write_text("x")  # four folders down: past the bound
    (top / "root" / "backup").mkdir(parents=True)
    (top / "root" / "backup" / "in-root.mksysb").write_text("x")  # inside --root: the system itself
    system = System(root=str(top / "root"))
    images = [i.value for i in services.backup_images(system)]
    assert images == [str(top / "out" / "sys.mksysb")]
    # A schedule's Backup DIRECTORY takes a folder: its list offers folders, no image file.
    folders = [i.value for i in services.schedule_directories(system)]
    assert str(top) in folders and all(os.path.isdir(f) for f in folders)
    monkeypatch.setattr(services, "MAX_ENTRIES", 3)
    assert services.backup_images(system)[-1].text.startswith("(more not searched")


async def test_keys_typed_fast_move_field_by_field(tmp_path):
    # Two Downs in one burst (a paste, a fast typist over SSH) must move two fields.
    app = make(tmp_path, "mksysb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        rows = app.screen.rows()
        app.screen.action_move(1)
        app.screen.action_move(1)
        assert app.screen.focused_row() is rows[2]
