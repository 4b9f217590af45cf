"""The guided backup in the TUI: every step driven with Pilot on a temporary root, a dry run,
the busy case with retry, and the remount offer after a crash."""

from __future__ import annotations

import os
import signal

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
        assert "Step 1 of 8" in t and "System data and user data" in t
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
        assert w.step == 2 and "Unmount the user file systems" in text(app)
        await pilot.press("f6")
        await pilot.pause()
        assert f"aixsmit cmd umount --root {tr.path} --all-user" in app.screen.message
        await pilot.press("enter", "enter")  # close F6, do the step
        s = await finish_command(app, pilot)
        assert "Command: OK" in s and not mounted(tr, "/home")
        assert w.step == 3
        await pilot.press("enter")  # sysonly
        s = await finish_command(app, pilot)
        assert "Command: OK" in s and w.step == 4
        await pilot.press("enter")  # mksysb
        s = await finish_command(app, pilot)
        assert "Command: OK" in s and w.step == 5
        backed_up = next(int(l.split()[2]) for l in s.splitlines() if l.startswith("Backing up "))
        await pilot.press("enter")  # mount again
        s = await finish_command(app, pilot)
        assert "Command: OK" in s and mounted(tr, "/home") and w.step == 6
        await pilot.press("enter")  # verify
        s = await finish_command(app, pilot)
        assert "Command: OK" in s and w.step == 7
        t = text(app)
        assert "Done" in t and f"Image:       {img}" in t and "Verified:    OK" in t
        assert f"Files:       {backed_up}" in t
    assert img.exists() and tr.p("/home/notes").read_text() == "mine"
    names = os.popen(f"tar -tf {img}").read().splitlines()
    assert "./usr/bin/ls" in names and "./home/notes" not in names


async def test_busy_step_names_holder_and_retry(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home")
    holder = tr.hold(tr.p("/home"))
    app = make(tmp_path, "walkthrough", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        w = app.screen
        await pilot.press("enter")
        await pilot.pause()
        await typed(pilot, str(tr.base / "sys.img"))
        await pilot.press("enter")
        await pilot.pause()
        assert w.step == 2
        assert "BUSY" in w.facts() and f"pid {holder.pid:>7}" in w.facts()
        await pilot.press("enter")  # tries, fails, names the holder, nothing changes
        s = await finish_command(app, pilot)
        assert "Command: failed" in s and w.step == 2 and mounted(tr, "/home")
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
        shown = []
        for _ in range(5):
            await pilot.press("enter")
            await pilot.pause()
            if isinstance(app.screen, MessagePopup):
                shown.append(app.screen.message)
                await pilot.press("enter")
                await pilot.pause()
        assert w.step == 7
    assert any("aixsmit cmd umount" in m for m in shown) and any("aixsmit cmd mksysb" in m for m in shown)
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
