"""The guided backup in the TUI: every step driven with Pilot on a temporary root, a dry run,
the busy case with retry, and the remount offer after a crash."""

from __future__ import annotations

import os
import signal
import time

from aixsmit.fs.unmount import Ledger
from aixsmit.tui.popups import MessagePopup
from aixsmit.tui.screens import CommandStatusScreen
from aixsmit.tui.walkthrough import WalkthroughScreen

from conftest import needs_root
from tui_helpers import make, text, typed, until

pytestmark = needs_root


def mounted(tr, mp):
    from aixsmit.fs.mounts import read_mountinfo

    return any(m.path == str(tr.p(mp)) for m in read_mountinfo())


async def to_steps_3_to_7(pilot, dest) -> None:
    """From step 1: on to the destination, type it, on to steps 3-7."""
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()
    await typed(pilot, str(dest))
    await pilot.press("enter")
    await pilot.pause()


async def finish_command(app, pilot):
    await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running, timeout=120)
    status = text(app)
    await pilot.press("f3")
    await pilot.pause(0.1)
    return status


async def test_every_step(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    tr.p("/home/notes").write_text("mine")
    tr.p("/usr/bin").mkdir(parents=True)
    tr.p("/usr/bin/ls").write_text("ls")
    out = tr.base / "out"
    out.mkdir()
    img = out / "first.mksysb"
    app = make(tmp_path, "top_menu", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "Guided System Backup (first time)" in text(app).splitlines()[4]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, WalkthroughScreen)
        w = app.screen
        t = text(app)
        assert "Step 1 of 8" in t and "System data and user data" in t and "Press Enter to go on." in t
        assert "/home" in t and "user" in t
        await pilot.press("enter")  # step 2: the destination
        await pilot.pause()
        await typed(pilot, str(tr.p("/home/oops.img")))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "which this procedure unmounts" in app.screen.message
        await pilot.press("enter")
        await pilot.pause()
        w.query_one("#dest").value = ""
        await typed(pilot, str(img))
        await pilot.press("enter")
        await pilot.pause()
        t = text(app)
        assert "Steps 3-7 of 8" in t and "Press Enter to run steps 3 to 7." in t
        await pilot.press("f6")
        await pilot.pause()
        assert f"aixsmit cmd sysbackup --root {tr.path} {img}" in app.screen.message
        await pilot.press("enter", "enter")  # close F6, run steps 3 to 7: one job
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running, timeout=120)
        s = text(app)
        assert "Command: OK" in s and "Enter=Summary" in s and mounted(tr, "/home")
        await pilot.press("enter")  # Enter does what it says: the summary
        await pilot.pause(0.2)
        assert app.screen is w and w.step == 3
        t = text(app)
        assert "Step 8 of 8" in t and "Image:" in t and str(img) in t and "Verified:         OK" in t
        # The command's own figures: its duration and file count, not the time on screen.
        log = w.job.log.read_text()
        assert next(l for l in log.splitlines() if l.startswith("  Duration:")) in t
        assert next(l for l in log.splitlines() if l.startswith("  Size:")) in t
    assert img.exists() and tr.p("/home/notes").read_text() == "mine"
    names = os.popen(f"tar -tf {img}").read().splitlines()
    assert "./usr/bin/ls" in names and "./home/notes" not in names


def _tars():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "tar"]


def _comm(pid) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""


def _cmdline(pid) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""


async def test_a_stopped_backup_mounts_again_and_reaches_the_summary(troot, tmp_path):
    # After a cancelled backup the guide offered to verify an image that did not exist, and its
    # summary could not be reached. F3 on COMMAND STATUS is Cancel while it runs, Back after.
    tr = troot
    tr.loop_mount("/home")
    tr.bulk("/srv-data", 300)  # system data: the image takes a while
    (tr.base / "out").mkdir()
    img = tr.base / "out" / "sys.mksysb"
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        w = app.screen
        await to_steps_3_to_7(pilot, img)
        await pilot.press("enter")
        # Hold the image's tar where it is (it takes a second here), so the cancel lands in the
        # middle of the backup.
        tars, end = [], time.monotonic() + 30
        while not tars and time.monotonic() < end:
            tars = [pid for pid in _tars() if str(tr.path) in _cmdline(pid)]  # (tar -C ROOT)
            time.sleep(0.002)
        assert tars
        for pid in tars:
            os.kill(pid, signal.SIGSTOP)
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and "Backing up " in text(app), timeout=60)
        assert app.screen.running
        await pilot.press("f3")  # Cancel: it asks
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup), text(app)
        assert "mounting again" in app.screen.message
        await pilot.press("enter")
        await pilot.pause(0.5)
        for pid in tars:
            os.kill(pid, signal.SIGCONT)
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running, timeout=60)
        assert "Command: failed" in text(app) and mounted(tr, "/home")
        await pilot.press("f3")  # back to the guide: it says how it ended and how to go on
        await pilot.pause(0.2)
        assert app.screen is w and "Steps 3 to 7 ended: FAILED." in text(app)
        assert "Press Enter for the summary." in text(app)
        await pilot.press("enter")
        await pilot.pause()
        t = text(app)
        assert w.step == 3 and "(none: the backup did not complete)" in t and "Verified" not in t
    assert not img.exists()


async def test_f10_in_the_guide_says_where_it_stands(troot, tmp_path):
    tr = troot
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        await typed(pilot, str(tr.base / "x.mksysb"))
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "The guided backup is not finished" in app.screen.message
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, WalkthroughScreen)


async def test_busy_step_names_holder_and_retry(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    holder = tr.hold(tr.p("/home"))
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        w = app.screen
        await to_steps_3_to_7(pilot, tr.base / "sys.img")
        assert w.step == 2
        assert "BUSY" in w.facts() and f"pid {holder.pid:>7}" in w.facts()
        await pilot.press("enter")  # tries, fails, names the holder, nothing changes
        s = await finish_command(app, pilot)
        assert "Command: failed" in s and w.step == 2 and mounted(tr, "/home")
        assert "Steps 3 to 7 ended: FAILED." in text(app) and "BUSY" in text(app)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        await pilot.press("f2")
        await pilot.pause()
        assert "No process holds them." in text(app)


async def test_dry_run_changes_nothing(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    app = make(tmp_path, "walkthrough", root=str(tr.path), dry_run=True)
    img = tr.base / "dry.img"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        w = app.screen
        assert "dry run" in text(app)
        await pilot.press("enter")
        await pilot.pause()
        await typed(pilot, str(img))
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup)
        shown = app.screen.message
        await pilot.press("enter")
        await pilot.pause()
        assert w.step == 3 and "Dry run: nothing was run" in text(app)
    assert f"aixsmit cmd sysbackup --root {tr.path} {img}" in shown
    assert mounted(tr, "/home") and not img.exists()


async def test_start_offers_to_mount_what_a_crash_left(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    tr.p("/home/x").write_text("x")
    from aixsmit.fs.table import System
    from aixsmit.fs.unmount import plan_unmount, unmount

    s = System(root=str(tr.path))
    unmount(s, plan_unmount(s, ["/home"]), Ledger())  # as a crashed run would leave it
    app = make(tmp_path, "top_menu", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert isinstance(app.screen, MessagePopup)
        assert "left unmounted by an earlier aixsmit run" in app.screen.message and "/home" in app.screen.message
        await pilot.press("enter")
        s = await finish_command(app, pilot)
        assert "Command: OK" in s
    assert mounted(tr, "/home") and tr.p("/home/x").read_text() == "x"


def _tree(path):
    # An empty lock file that reading the ledger takes is not something written.
    return sorted((str(p), p.stat().st_mtime_ns) for p in path.rglob("*")
                  if not (p.suffix == ".lock" and p.stat().st_size == 0)) if path.exists() else []


async def test_a_dry_run_runs_nothing_wherever_it_leads(troot, tmp_path):
    # The dry run's last screen offered Back Up a Volume Group, which then ran savevg for real.
    tr = troot
    tr.loop_mount("/home")
    state = tmp_path / "state"
    img = tr.base / "vg.savevg"
    app = make(tmp_path, "walkdone", root=str(tr.path), dry_run=True)
    before = _tree(state)  # the menus' cache is there by now
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")  # Back Up a Volume Group
        await pilot.pause()
        await typed(pilot, str(img))
        await pilot.press("down")
        await typed(pilot, "datavg")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "(dry run) This command would run:" in app.screen.message
        assert "aixsmit cmd savevg" in app.screen.message
        await pilot.pause(0.5)
    assert not img.exists() and _tree(state) == before and mounted(tr, "/home")
    assert "internal command was not run. (dry run)" in (tmp_path / "smit.log").read_text()


async def test_earlier_jobs_do_not_cover_step_one(troot, tmp_path):
    # The "Commands started earlier" pop-up covered step 1 and took its Enter.
    from aixsmit.jobs import detached

    job = detached.start("Earlier", "true", ["true"])
    end = time.monotonic() + 20
    while detached.refresh(job).status == detached.RUNNING and time.monotonic() < end:
        time.sleep(0.05)
    app = make(tmp_path, "walkthrough", root=str(troot.path))
    app._started_at = time.time() + 1  # the job above counts as started earlier
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(app.screen, WalkthroughScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.step == 1 and "Step 2 of 8" in text(app)


async def test_names_in_the_ledger_reach_the_screen_escaped(troot, tmp_path):
    """A mount point holding a newline, a tab and ESC (with a colour sequence after it) is
    shown through the one escaper wherever the TUI shows what aixsmit unmounted: the offer to
    mount it again, the F4 list of Mount a Group of File Systems, and the guide's warnings.
    Raw, the newline forged a line of the message and ESC reached the terminal."""
    from aixsmit.fs.table import System
    from aixsmit.fs.unmount import plan_unmount, unmount

    tr = troot
    odd = "/srv/a\nLEFT UNMOUNTED: /fake\tb\x1b[31mred"
    shown = "/srv/a\\012LEFT\\040UNMOUNTED:\\040/fake\\011b\\033[31mred"
    tr.loop_mount(odd)
    s = System(root=str(tr.path))
    unmount(s, plan_unmount(s, [odd]), Ledger())  # as a crashed run would leave it

    def clean(screen_text: str) -> None:
        assert "\x1b" not in screen_text and "\t" not in screen_text and "/fake" not in screen_text.replace(shown, "")

    app = make(tmp_path, "top_menu", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert isinstance(app.screen, MessagePopup)
        assert shown in app.screen.message
        clean(app.screen.message)
        clean(text(app))
        await pilot.press("f3")  # leave it unmounted
        await pilot.pause()
        app.open("mountg")
        await pilot.pause()
        await pilot.press("down", "f4")
        await until(pilot, lambda: not getattr(app.screen, "building", True))
        from textual.widgets import OptionList

        rows = [str(o.prompt) for o in app.screen.query_one(OptionList).options]
        assert any(shown in r for r in rows), rows
        assert "\\012LEFT" in text(app)
        clean(text(app))
        await pilot.press("f7", "enter")  # into the field: the name itself, drawn a picture a character
        await pilot.pause()
        assert app.screen.values()["mounts"] == odd
        t = text(app)
        assert "\x1b" not in t and "\t" not in t and "/srv/a\u240aLEFT" in t, t
        await pilot.press("f6")  # the command as it would run, through the escaper
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and "\\033[31mred" in app.screen.message
        assert "\x1b" not in app.screen.message and "\nLEFT" not in app.screen.message
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f3")
        await pilot.pause()
        app.open("walkthrough")
        await pilot.pause()
        await pilot.press("f10")  # the guide says what is still unmounted
        await pilot.pause()
        assert isinstance(app.screen, MessagePopup) and shown in app.screen.message
        clean(app.screen.message)
        clean(text(app))
        w = app.screen_stack[-2]
        assert isinstance(w, WalkthroughScreen)
        assert shown in w.summary()
        clean(w.summary())


async def test_a_new_guide_picks_up_its_job_running_then_ended(troot, tmp_path):
    """Steps 3-7 are one detached job that outlives the screen. Leave the guide while it runs:
    a new guide shows that very job (COMMAND STATUS, its progress live), not step 1 or a second
    backup. Leave again, let it end with no screen open: the next guide shows its result, and
    Enter there is its summary. Once seen, a new guide starts afresh."""
    from aixsmit.jobs import detached
    from aixsmit.tui.walkthrough import JOB_TITLE

    tr = troot
    tr.loop_mount("/home")
    tr.bulk("/srv-data", 100)  # system data: the image takes a while
    (tr.base / "out").mkdir()
    img = tr.base / "out" / "sys.mksysb"

    def guided():
        return [j for j in detached.all_jobs() if j.title == JOB_TITLE]

    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await to_steps_3_to_7(pilot, img)
        await pilot.press("enter")
        tars, end = [], time.monotonic() + 30  # held in the middle of the image
        while not tars and time.monotonic() < end:
            tars = [pid for pid in _tars() if str(tr.path) in _cmdline(pid)]
            time.sleep(0.002)
        assert tars
        for pid in tars:
            os.kill(pid, signal.SIGSTOP)
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and "Backing up " in text(app), timeout=60)
    try:
        [job] = guided()
        assert detached.refresh(job).status == detached.RUNNING
        app = make(tmp_path, "walkthrough", root=str(tr.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and "Backing up " in text(app),
                        timeout=30)
            s = app.screen
            assert s.job.id == job.id and s.running and s.files_total
            assert "Command: running" in text(app) and "files" in str(s.query_one("#progress-text").render())
            assert isinstance(app.screen_stack[-2], WalkthroughScreen) and app.screen_stack[-2].step == 2
    finally:
        for pid in tars:
            os.kill(pid, signal.SIGCONT)
    end = time.monotonic() + 120
    while detached.refresh(job).status == detached.RUNNING and time.monotonic() < end:
        time.sleep(0.2)
    assert detached.refresh(job).status == "OK"
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running, timeout=30)
        t = text(app)
        assert app.screen.job.id == job.id and "Command: OK" in t and "Enter=Summary" in t
        await pilot.press("enter")
        await pilot.pause(0.2)
        t = text(app)
        assert "Step 8 of 8" in t and "Verified:         OK" in t and str(img) in t
    assert [j.id for j in guided()] == [job.id]  # no second backup
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(app.screen, WalkthroughScreen) and "Step 1 of 8" in text(app)
    assert img.exists() and mounted(tr, "/home")
