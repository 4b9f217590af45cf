"""Backups by level and scheduled runs, for real on loop-mounted file systems (aix-smit.md §5,
linux-backup.md §2.2-§2.3, §6)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

from aixsmit.jobs import schedule as sch, scheduler

from conftest import aixsmit, needs_root
from treecmp import diff, snapshot

pytestmark = needs_root


@pytest.fixture
def home(troot, tmp_path, monkeypatch):
    tr = troot
    tr.loop_mount("/home")
    (tr.p("/home/d")).mkdir()
    tr.p("/home/a").write_text("a1")
    tr.p("/home/b").write_text("b1")
    tr.p("/home/d/c").write_text("c1")
    tr.out = tr.base / "backups"
    tr.out.mkdir()
    monkeypatch.setenv("AIXSMIT_CRON_DIR", str(tmp_path / "cron.d"))
    return tr


def restore_into(tr, archives, target):
    target.mkdir()
    for a in archives:
        r = aixsmit("cmd", "restore", "-r", "-f", a, "--target", target, env=tr.env())
        assert r.returncode == 0, r.stderr


def test_level0_change_level1_restore_chain(home):
    tr = home
    env = tr.env()
    l0 = tr.out / "home.L0.tar"
    r = aixsmit("cmd", "backup", "-0", "-u", "-f", l0, "/home", "--root", tr.path, env=env)
    assert r.returncode == 0, r.stderr
    assert "backup: The date of the last level 0 backup is the epoch." in r.stdout
    assert r.stdout.splitlines()[-1] == "backup: The backup is complete."
    # Day 1: change, delete, add.
    tr.p("/home/a").write_text("a2 changed")
    tr.p("/home/b").unlink()
    tr.p("/home/d/new").write_text("new")
    l1 = tr.out / "home.L1-day1.tar"
    base = tr.base / "state" / "levels" / "home.0.snar"
    before = base.read_bytes()
    assert aixsmit("cmd", "backup", "-1", "-u", "-f", l1, "/home", "--root", tr.path, env=env).returncode == 0
    assert base.read_bytes() == before  # tar rewrote a copy of the full's snapshot, never the snapshot itself
    assert (tr.base / "state" / "levels" / "home.1.snar").read_bytes() != before
    names = subprocess.run(["tar", "-tf", l1], capture_output=True, text=True).stdout.split()
    assert "./a" in names and "./d/new" in names and "./d/c" not in names  # only what changed
    restored = tr.base / "r1"
    restore_into(tr, [l0, l1], restored)
    assert diff(snapshot(str(tr.p("/home")), skip=("lost+found",)), snapshot(str(restored), skip=("lost+found",))) == []
    assert not (restored / "b").exists()  # deleted files stay deleted
    # Day 2: measured against the full again, not against day 1.
    tr.p("/home/d/c").write_text("c2")
    l1b = tr.out / "home.L1-day2.tar"
    assert aixsmit("cmd", "backup", "-1", "-u", "-f", l1b, "/home", "--root", tr.path, env=env).returncode == 0
    names = subprocess.run(["tar", "-tf", l1b], capture_output=True, text=True).stdout.split()
    assert "./a" in names and "./d/new" in names and "./d/c" in names
    restored2 = tr.base / "r2"
    restore_into(tr, [l0, l1b], restored2)
    assert diff(snapshot(str(tr.p("/home")), skip=("lost+found",)), snapshot(str(restored2), skip=("lost+found",))) == []
    dump = (tr.base / "state" / "dumpdates").read_text().splitlines()
    assert [l.split()[:2] for l in dump] == [["/home", "0"], ["/home", "1"]]


def test_daily_without_a_full_becomes_one(home):
    tr = home
    l = tr.out / "first.tar"
    r = aixsmit("cmd", "backup", "-1", "-u", "-f", l, "/home", "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stderr
    assert "this level 1 backup is made as a full (level 0) backup" in r.stdout
    names = subprocess.run(["tar", "-tf", l], capture_output=True, text=True).stdout.split()
    assert {"./a", "./b", "./d/c"} <= set(names)


def test_cron_file_exact_and_each_line_runs_as_written(home, tmp_path):
    tr = home
    env = tr.env(AIXSMIT_CRON_DIR=tmp_path / "cron.d", AIXSMIT_SCHEDULER="cron")
    (tr.out / "sys").mkdir()
    (tr.out / "user").mkdir()
    r = aixsmit("cmd", "schedule", "add", "system", "--weekly", "sun@03:30", "--dest", tr.out / "sys", "--root", tr.path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Added system1: system image every Sun 03:30; next run ")
    r = aixsmit("cmd", "schedule", "add", "user", "/home", "--daily", "00:15", "--dest", tr.out / "user",
                "--root", tr.path, env=env)
    assert r.returncode == 0, r.stderr
    cron = (tmp_path / "cron.d" / "aixsmit").read_text()
    lines = cron.splitlines()
    assert lines[0] == scheduler.BEGIN and lines[-1] == scheduler.END
    assert lines[1:3] == ["SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert lines[3] == "# system1: system image every Sun 03:30"
    assert lines[5] == "# user1: /home: full Sun 00:15, level 1 daily 00:15"
    sys_line, user_line = lines[4], lines[6]
    assert sys_line.startswith("30 3 * * 0 root ") and sys_line.endswith(" cmd schedule run --quiet system1")
    assert user_line.startswith("15 0 * * * root ") and user_line.endswith(" cmd schedule run --quiet user1")
    assert f"AIXSMIT_STATE_DIR={tr.base / 'state'}" in sys_line
    # Run each command as cron would: the sixth field on, through /bin/sh, with cron's PATH.
    for line in (user_line, sys_line):
        command = line.split(None, 6)[6]
        p = subprocess.run(["/bin/sh", "-c", command], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)},
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (command, p.stdout, p.stderr)
    listed = json.loads(aixsmit("cmd", "schedule", "list", "--json", env=env).stdout)["schedules"]
    assert [(s["id"], s["last"]["result"]) for s in listed] == [("system1", "OK"), ("user1", "OK")]
    assert all(s["next_run"] for s in listed)
    assert len(list((tr.out / "sys").glob("*.mksysb"))) == 1
    assert len(list((tr.out / "user" / "home").glob("*/*.L0.tar"))) == 1
    logs = list((tr.base / "state" / "runs" / "system1").glob("*.log"))
    assert logs and "0512-038 mksysb: Backup Completed Successfully." in logs[0].read_text()
    assert aixsmit("cmd", "schedule", "remove", "system1", env=env).returncode == 0
    assert "system1" not in (tmp_path / "cron.d" / "aixsmit").read_text()


def test_overlapping_runs_are_refused(home):
    """A run that finds the one lock held (another run, an unmount, a mksysb) is skipped, and
    the record says so."""
    from aixsmit.state import mount_lock

    tr = home
    env = tr.env()
    assert aixsmit("cmd", "schedule", "add", "user", "/home", "--daily", "04:00", "--dest", tr.out, "--root", tr.path,
                   env=env).returncode == 0
    with mount_lock("umount"):
        r = aixsmit("cmd", "schedule", "run", "user1", env=env)
    assert r.returncode == 1
    assert f"another aixsmit run is unmounting or mounting file systems (pid {os.getpid()}" in r.stderr
    assert "This run is skipped." in r.stderr
    assert list(tr.out.rglob("*.tar")) == []
    assert sch.last_run("user1")["result"] == "SKIPPED"


def test_retention_keeps_the_last_chains_after_a_new_full(home):
    tr = home
    env = tr.env()
    assert aixsmit("cmd", "schedule", "add", "user", "/home", "--daily", "04:00", "--full-day", "sun", "--keep", "2",
                   "--dest", tr.out, "--root", tr.path, env=env).returncode == 0
    sunday = dt.datetime(2026, 11, 1, 4, 0)  # a Sunday
    msgs = []
    for week in range(3):
        for day in range(2):  # the full, then a daily
            when = sunday + dt.timedelta(weeks=week, days=day)
            tr.p("/home/a").write_text(f"week {week} day {day}")
            assert sch.run_schedule("user1", lambda l, s: msgs.append(l), now=when) == 0
    files = sorted(str(p.relative_to(tr.out / "home")) for p in (tr.out / "home").rglob("*.tar"))
    assert files == ["20261108-040000/20261108-040000.L0.tar", "20261108-040000/20261109-040000.L1.tar",
                     "20261115-040000/20261115-040000.L0.tar", "20261115-040000/20261116-040000.L1.tar"]
    assert any("removed the chain of 2026-11-01 04:00" in m for m in msgs)
    assert sorted(p.name for p in (tr.base / "state" / "chains" / "user1" / "home").iterdir()) == [
        "20261108-040000.snar", "20261115-040000.snar"]
    # Restore the state of Monday 16 Nov: the full of the 15th, then the daily of the 16th.
    target = tr.base / "restored"
    from aixsmit.backup import chains

    picked = chains.restore_chain(tr.out / "home", "/home", dt.datetime(2026, 11, 17), str(target), lambda l, st: None)
    assert [os.path.basename(p) for p in picked] == ["20261115-040000.L0.tar", "20261116-040000.L1.tar"]
    assert (target / "a").read_text() == "week 2 day 1"


async def test_schedules_from_the_menus(home, tmp_path):
    """Set up both schedules from the dialogs, then see them in List Schedules."""
    from aixsmit.tui.screens import CommandStatusScreen
    from tui_helpers import make, text, typed, until

    tr = home
    (tr.out / "sys").mkdir()
    (tr.out / "user").mkdir()
    app = make(tmp_path, "schedsys", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down")
        await typed(pilot, str(tr.out / "sys"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        assert "Command: OK" in text(app) and "Added system1: system image every Sun 05:30" in text(app)
    app = make(tmp_path, "scheduser", root=str(tr.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for _ in range(4):
            await pilot.press("down")
        await typed(pilot, str(tr.out / "user"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        assert "Command: OK" in text(app) and "Added user1: all user file systems" in text(app)
    app = make(tmp_path, "schedlist")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CommandStatusScreen) and not app.screen.running)
        await pilot.pause(0.2)
        t = text(app)
        assert "system1" in t and "user1" in t and "never run" in t, t
        assert "Run by cron (" in t and "WARNING: no cron daemon is running" in t, t
    cron = (tmp_path / "cron.d" / "aixsmit").read_text()
    assert " cmd schedule run --quiet system1\n" in cron and " cmd schedule run --quiet user1\n" in cron


def test_restore_r_shows_progress_then_its_result(home):
    """A whole-file-system restore reads its archive with the same progress as restore -x (the
    bar of COMMAND STATUS follows it), and ends with its one result line."""
    tr = home
    tr.bulk("/home/big", 8)
    l0 = tr.out / "home.L0.tar"
    assert aixsmit("cmd", "backup", "-0", "-f", l0, "/home", "--root", tr.path, env=tr.env()).returncode == 0
    target = tr.base / "whole"
    target.mkdir()
    r = aixsmit("cmd", "restore", "-r", "-f", l0, "--target", target,
                env=tr.env(AIXSMIT_PROGRESS_SECONDS="0.001"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.endswith("%)") and " bytes read (" in line for line in lines), lines
    assert lines[-1].startswith(f"restore: {l0} was restored into {target}")
    assert (target / "big").stat().st_size == 8 << 20


async def test_schedule_restore_shows_the_byte_bar(home, tmp_path, monkeypatch):
    """Restore from a Scheduled Backup reads the chain's archives (the full, then the daily)
    with the same progress as restore -x and -r: COMMAND STATUS draws its bar from the bytes
    of both, and the command's output says them (it showed no bar at all)."""
    from aixsmit.tui.screens import CommandStatusScreen
    from tui_helpers import make, text, until

    tr = home
    tr.bulk("/home/big", 12)
    sunday = dt.datetime(2026, 11, 1, 4, 0)
    assert aixsmit("cmd", "schedule", "add", "user", "/home", "--daily", "04:00", "--full-day", "sun",
                   "--dest", tr.out, "--root", tr.path, env=tr.env()).returncode == 0
    assert sch.run_schedule("user1", lambda l, s: None, now=sunday) == 0
    tr.bulk("/home/more", 6)
    assert sch.run_schedule("user1", lambda l, s: None, now=sunday + dt.timedelta(days=1)) == 0
    from aixsmit.backup import chains

    picked = chains.pick(chains.fs_folder(tr.out, "/home"), "/home", None).archives(None)
    assert len(picked) == 2
    size = sum(p.stat().st_size for p in picked)
    monkeypatch.setenv("AIXSMIT_PROGRESS_SECONDS", "0.02")
    target = tr.base / "restored"
    app = make(tmp_path, "top_menu", root=str(tr.path))
    totals: set[int] = set()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open("schedrestore", preset={"id": "user1", "fs": "/home", "target": str(target), "dryrun": "no"})
        await pilot.pause()
        await pilot.press("enter")  # ARE YOU SURE?
        await pilot.pause()
        await pilot.press("enter")

        def ended():
            s = app.screen
            if isinstance(s, CommandStatusScreen) and s._progress is not None:
                totals.add(s._progress.bytes_total)
            return isinstance(s, CommandStatusScreen) and not s.running

        await until(pilot, ended, timeout=120)
        shown = text(app)
        assert "Command: OK" in shown, shown
        bar = str(app.screen.query_one("#progress-text").render())
        assert "100%" in bar and f"/{size >> 20:,} MB" in bar, bar
    assert totals == {size}
    assert (target / "big").stat().st_size == 12 << 20 and (target / "more").stat().st_size == 6 << 20
    (tr.base / "again").mkdir()  # an empty directory: what it would remove is read first
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--target", tr.base / "again",
                env=tr.env(AIXSMIT_PROGRESS_SECONDS="0.01"))
    assert r.returncode == 0, r.stderr
    read = [int(line.split()[0]) for line in r.stdout.splitlines() if line.endswith("%)") and " bytes read (" in line]
    assert read and read == sorted(read) and all(f" of {size} bytes read (" in l for l in r.stdout.splitlines()
                                                 if " bytes read (" in l)
