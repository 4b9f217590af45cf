"""Schedules tried as a hostile user and a new operator would: values that reach cron and
unit files, destinations that are not directories, a cron file that cannot be written, runs
that fail early, names that two mount points share, chains with a hole, daylight saving, and
restores that must not delete (issue "Schedules that run, chains that restore")."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import zoneinfo

import pytest
from hypothesis import given, settings, strategies as st

from aixsmit.backup.incremental import fs_key
from aixsmit.jobs import schedule as sch, scheduler

from conftest import aixsmit, needs_root
from treecmp import diff, snapshot

SUNDAY = dt.datetime(2026, 11, 1, 4, 0)
quiet = lambda line, stream: None  # noqa: E731


@pytest.fixture
def home(troot, tmp_path):
    tr = troot
    tr.loop_mount("/home", size_mb=8)
    tr.p("/home/a").write_text("a0")
    tr.p("/home/b").write_text("b0")
    tr.dest = tr.base / "dest"
    tr.dest.mkdir()
    return tr


def add(tr, *args, env=None):
    return aixsmit("cmd", "schedule", "add", *args, "--root", tr.path, env=env or tr.env())


# --- 1. values that reach a cron line or a unit ------------------------------------------------

@needs_root
def test_a_file_system_name_with_a_newline_writes_no_cron_line(home, tmp_path):
    tr = home
    evil = "/home\n* * * * * root touch /tmp/aixsmit-pwned #"
    r = add(tr, "user", evil, "--daily", "04:00", "--dest", tr.dest)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "control character" in r.stderr, r.stderr
    for bad in (["/nothere"], ["/home/../etc"], ["/"]):
        r = add(tr, "user", *bad, "--daily", "04:00", "--dest", tr.dest)
        assert r.returncode == 2 and "is not a mounted user file system" in r.stderr, (bad, r.stderr)
    r = add(tr, "user", "/home", "--daily", "04:00", "--dest", f"{tr.dest}\n* * * * * root id #")
    assert r.returncode == 2 and "control character" in r.stderr
    assert not (tmp_path / "cron.d" / "aixsmit").exists()
    assert aixsmit("cmd", "schedule", "list", env=tr.env()).stdout == "No backups are scheduled.\n"


HOSTILE = st.text(alphabet=st.characters().filter(str.isprintable), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_cron_and_unit_quoting_give_back_the_exact_argument(arg):
    # crontab(5): unescaped % ends the command; \% is a %. Then /bin/sh's words.
    line = scheduler.cron_quote(arg)
    assert re.search(r"(?<!\\)%", line) is None
    assert shlex.split(line.replace("\\%", "%")) == [arg]
    # systemd.syntax(7): a double-quoted word; %% and $$ are % and $.
    word = scheduler.unit_quote(arg)
    assert [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(word)] == [arg]
    assert re.search(r"(?<!%)%(?!%)", word.replace("%%", "")) is None


def test_control_characters_are_refused_by_both_quotings():
    for arg in ("a\nb", "a\rb", "a\x1bb", "a\x00b"):
        for quote in (scheduler.cron_quote, scheduler.unit_quote):
            with pytest.raises(Exception, match="control character"):
                quote(arg)


# --- 2. a destination that is not a directory --------------------------------------------------

@needs_root
def test_a_destination_that_is_not_a_directory(home):
    tr = home
    image = tr.base / "old.mksysb"
    image.write_text("an image")
    for dest, says in ((image, "is not a directory"), (tr.base / "nowhere", "does not exist"),
                       ("relative", "must be an absolute path")):
        r = add(tr, "user", "/home", "--daily", "04:00", "--dest", dest)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    # Added while it was a directory, a file since: the run fails with one line, recorded.
    assert add(tr, "user", "/home", "--daily", "04:00", "--dest", tr.dest).returncode == 0
    tr.dest.rmdir()
    tr.dest.write_text("now a file")
    assert sch.run_schedule("user1", quiet, now=SUNDAY) == 2
    last = sch.last_run("user1")
    assert last["result"] == "FAILED"
    assert open(last["log"]).read().splitlines()[1] == f"schedule: the destination {tr.dest} is not a directory (each run writes new files into a directory)."


# --- 3. a schedule that nothing would run ------------------------------------------------------

@needs_root
def test_a_cron_file_that_cannot_be_written_keeps_no_schedule(home, tmp_path):
    tr = home
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cron folder should be")
    env = tr.env(AIXSMIT_CRON_DIR=blocker / "cron.d", AIXSMIT_SCHEDULER="cron")
    r = add(tr, "user", "/home", "--daily", "04:00", "--dest", tr.dest, env=env)
    assert r.returncode == 1 and "cron would not see the schedule" in r.stderr and "Traceback" not in r.stderr
    assert aixsmit("cmd", "schedule", "list", env=env).stdout == "No backups are scheduled.\n"


def test_the_scheduler_is_detected_and_said(tmp_path, monkeypatch):
    monkeypatch.delenv("AIXSMIT_SCHEDULER", raising=False)
    found = scheduler.detect("linux")
    booted = os.path.isdir("/run/systemd/system")
    assert found.kind == ("systemd" if booted else "cron")
    if not booted:
        daemons = {open(f"/proc/{p}/comm").read().strip() for p in os.listdir("/proc") if p.isdigit()
                   and os.path.exists(f"/proc/{p}/comm")}
        assert found.running == bool(daemons & set(scheduler.CRON_DAEMONS))
        assert ("no cron daemon is running" in found.problem) == (not found.running)
    units = scheduler.detect("linux", "systemd")
    assert units.kind == "systemd" and (units.problem == "") == booted


# --- 4. runs that leave no trace ---------------------------------------------------------------

def test_a_run_of_a_schedule_that_is_gone_is_recorded_and_told(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("logger", "sendmail"):
        (bindir / name).write_text(f'#!/bin/sh\necho "$*" >> "{bindir}/{name}.args"\ncat >/dev/null\n')
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert sch.run_schedule("user7", quiet, now=SUNDAY) == 1
    last = sch.last_run("user7")
    assert last["result"] == "FAILED" and last["told"] == ["syslog", "mail to root"]
    assert "there is no schedule user7" in open(last["log"]).read()
    assert "aixsmit" in (bindir / "logger.args").read_text() and (bindir / "sendmail.args").read_text() == "-oi root\n"
    # Without a mailer the record says so, instead of pretending.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("aixsmit.jobs.notify.MAILERS", ())
    assert sch.run_schedule("user7", quiet, now=SUNDAY + dt.timedelta(hours=1)) == 1
    assert sch.last_run("user7")["told"] == ["no logger command", "no mailer (sendmail) for a mail to root"]


@needs_root
def test_a_run_stopped_by_sigterm_is_recorded_and_told(home, tmp_path):
    import sys
    import time

    tr = home
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # A backup that takes its time, and stays named tar while it does (no exec of sleep).
    (bindir / "tar").write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    for name in ("tar", "logger", "sendmail"):
        if name != "tar":
            (bindir / name).write_text(f'#!/bin/sh\necho "$*" >> "{bindir}/{name}.args"\ncat >/dev/null\n')
        (bindir / name).chmod(0o755)
    assert add(tr, "user", "/home", "--daily", "04:00", "--dest", tr.dest).returncode == 0
    env = tr.env(PATH=f"{bindir}:{os.environ['PATH']}", AIXSMIT_NOW=SUNDAY.isoformat())
    p = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", "schedule", "run", "--quiet", "user1"], env=env)

    def gone(pid: str) -> bool:  # exited (a zombie not yet reaped by whoever inherited it counts)
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    child: list[str] = []
    deadline = time.monotonic() + 30
    while not child and time.monotonic() < deadline and p.poll() is None:
        child = subprocess.run(["pgrep", "-x", "tar", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.05)
    assert child, "the backup's tar never started"
    p.terminate()
    assert p.wait(timeout=30) == 128 + 15
    last = sch.last_run("user1")
    assert last["result"] == "FAILED" and last["told"] == ["syslog", "mail to root"]
    said = open(last["log"]).read()
    assert "the run was stopped by SIGTERM; its partial archive of " in said and " was removed." in said
    assert list(tr.dest.rglob("*")) == [tr.dest / "home"]  # no partial archive, no chain without its full
    deadline = time.monotonic() + 10
    while not gone(child[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child[0])  # the backup's process went with the run


# --- 5. names two mount points share -----------------------------------------------------------

def test_keys_are_systemd_escape_and_injective():
    paths = ["/", "/home", "/home/x", "/home_x", "/home-x", "/a b", "/a\\x20b", "/.hidden/x", "/x/.y", "/é"]
    keys = [fs_key(p) for p in paths]
    assert len(set(keys)) == len(keys)
    for p, k in zip(paths, keys):
        assert k == subprocess.run(["systemd-escape", "--path", p], capture_output=True, text=True).stdout.strip()
    long = "/" + "d" * 300
    assert len(fs_key(long)) <= 200 and fs_key(long) != fs_key(long + "e")


@needs_root
def test_home_x_and_home_underscore_x_keep_apart(troot):
    tr = troot
    tr.p("/home/x").mkdir()
    tr.loop_mount("/home/x", size_mb=8)
    tr.p("/home_x").mkdir()
    dev = subprocess.run(["losetup", "-f", "--show", tr.image("underscore", 8)], capture_output=True, text=True,
                         check=True).stdout.strip()
    tr.loops.append(dev)
    subprocess.run(["mount", dev, tr.p("/home_x")], check=True)
    tr.p("/home/x/slash").write_text("from /home/x")
    tr.p("/home_x/underscore").write_text("from /home_x")
    dest = tr.base / "dest"
    dest.mkdir()
    assert add(tr, "user", "/home/x", "/home_x", "--daily", "04:00", "--dest", dest).returncode == 0
    assert sch.run_schedule("user1", quiet, now=SUNDAY) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["home-x", "home_x"]
    target = tr.base / "r"
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home_x", "--target", target, env=tr.env())
    assert r.returncode == 0, r.stderr
    assert (target / "underscore").exists() and not (target / "slash").exists()
    # By hand: a level 0 of /home/x is no base for a level 1 of /home_x, nor is a snapshot an
    # earlier version left under the name both shared.
    env = tr.env()
    assert aixsmit("cmd", "backup", "-0", "-u", "-f", tr.base / "x0.tar", "/home/x", "--root", tr.path,
                   env=env).returncode == 0
    (tr.base / "state" / "snapshots").mkdir()
    (tr.base / "state" / "snapshots" / "home_x.0.snar").write_bytes(b"GNU tar-1.35-2\n")
    r = aixsmit("cmd", "backup", "-1", "-u", "-f", tr.base / "u1.tar", "/home_x", "--root", tr.path, env=env)
    assert r.returncode == 0 and "made as a full (level 0) backup" in r.stdout, r.stdout + r.stderr
    assert "home_x.0.snar was recorded under a name that /home_x shares with other mount points" in r.stdout


@needs_root
def test_archives_of_the_earlier_layout_are_read_and_never_built_on(home):
    """Before chains had folders, a schedule's archives lay in DEST/NAME/, NAME the lossy key."""
    tr = home
    env = tr.env()
    old = tr.dest / "home"
    old.mkdir()
    assert aixsmit("cmd", "backup", "-0", "-f", old / "20261025-040000.L0.tar", "/home", "--root", tr.path,
                   env=env).returncode == 0
    assert add(tr, "user", "/home", "--daily", "04:00", "--dest", tr.dest).returncode == 0
    tr.p("/home/a").write_text("a1")
    msgs = []
    assert sch.run_schedule("user1", lambda l, s: msgs.append(l), now=SUNDAY + dt.timedelta(days=1)) == 0
    assert any("this run makes one (level 0)" in m for m in msgs)
    assert (old / "20261102-040000" / "20261102-040000.L0.tar").exists()
    target = tr.base / "october"
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--date", "2026-10-30", "--target", target,
                env=env)
    assert r.returncode == 0, r.stderr
    assert (target / "a").read_text() == "a0"
    # /home/x's old folder was home_x, a name /home_x had too: it is named, not read.
    tr.p("/home/x").mkdir()
    tr.loop_mount("/home/x", size_mb=8)
    (tr.dest / "home_x").mkdir()
    assert aixsmit("cmd", "schedule", "change", "user1", "/home/x", env=env).returncode == 0
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home/x", "--target", tr.base / "x", env=env)
    assert r.returncode == 1 and f"{tr.dest / 'home_x'} holds backups of an earlier version" in r.stderr, r.stderr


# --- 6. a chain with a hole --------------------------------------------------------------------

@needs_root
def test_a_schedule_builds_its_own_chain_and_refuses_one_without_its_full(home):
    tr = home
    env = tr.env()
    # A level 0 made by hand, recorded, elsewhere.
    assert aixsmit("cmd", "backup", "-0", "-u", "-f", tr.base / "byhand.tar", "/home", "--root", tr.path,
                   env=env).returncode == 0
    assert add(tr, "user", "/home", "--daily", "04:00", "--full-day", "sun", "--dest", tr.dest).returncode == 0
    msgs = []
    monday = SUNDAY + dt.timedelta(days=1)
    assert sch.run_schedule("user1", lambda l, s: msgs.append(l), now=monday) == 0
    assert any("this run makes one (level 0)" in m for m in msgs)
    assert [p.name for p in tr.dest.rglob("*.tar")] == ["20261102-040000.L0.tar"]
    tr.p("/home/a").write_text("a changed")
    assert sch.run_schedule("user1", quiet, now=monday + dt.timedelta(days=1)) == 0
    daily = tr.dest / "home" / "20261102-040000" / "20261103-040000.L1.tar"
    assert daily.exists()
    # F4 in Restore from a Level Backup: the chain, full first, then archives made by hand;
    # in the destination fields: directories only.
    from aixsmit.fs.table import System
    from aixsmit.smit import services

    system = System(root=str(tr.path))
    items = [(i.value, i.text) for i in services.level_archives(system)]
    full = tr.dest / "home" / "20261102-040000" / "20261102-040000.L0.tar"
    assert [v for v, _ in items] == [str(full), str(daily), str(tr.base / "byhand.tar")]
    assert items[0][1].split() == ["/home", "level", "0", "2026-11-02", "04:00", "schedule", "user1"]
    assert items[2][1].split()[1:] == ["level", "backup"]
    assert [i.value for i in services.scheduled_fs(system)] == ["/home"]
    dirs = [i.value for i in services.schedule_directories(system)]
    assert str(tr.dest) in dirs and all(os.path.isdir(d) for d in dirs)
    # The full goes missing: a restore refuses, naming it, and writes nothing.
    (tr.dest / "home" / "20261102-040000" / "20261102-040000.L0.tar").unlink()
    target = tr.base / "r"
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--target", target, env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert "the full backup (level 0) of /home of 2026-11-02 04:00 is not in" in r.stderr
    assert "20261102-040000.L0.tar" in r.stderr and not target.exists()
    # And the next daily is a full again, in a chain of its own.
    assert sch.run_schedule("user1", quiet, now=monday + dt.timedelta(days=2)) == 0
    assert (tr.dest / "home" / "20261104-040000" / "20261104-040000.L0.tar").exists()


# --- 7. daylight saving ------------------------------------------------------------------------

def test_daylight_saving_from_the_zone_s_real_transitions():
    start = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    havana = zoneinfo.ZoneInfo("America/Havana")  # changes at 00:00
    assert scheduler.dst_clashes(0, 30, havana, start) == [(dt.date(2027, 3, 14), "skipped"),
                                                           (dt.date(2027, 11, 7), "repeated")]
    assert scheduler.dst_clashes(1, 30, havana, start) == []
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    assert scheduler.dst_clashes(2, 30, berlin, start) == [(dt.date(2027, 3, 28), "skipped"),
                                                           (dt.date(2027, 10, 31), "repeated")]
    assert scheduler.dst_clashes(1, 30, berlin, start) == []
    assert scheduler.dst_clashes(2, 30, zoneinfo.ZoneInfo("UTC"), start) == []


def test_the_note_names_the_zone_s_hour_and_the_defaults_never_get_it(tmp_path):
    dest = tmp_path / "images"
    dest.mkdir()
    env = dict(os.environ, TZ="America/Havana", AIXSMIT_HOST="linux")
    r = aixsmit("cmd", "schedule", "add", "system", "--weekly", "sun@00:30", "--dest", dest, "--root", tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "in America/Havana, 00:30 is skipped on" in r.stderr
    r = aixsmit("cmd", "schedule", "change", "system1", "--weekly", "sun@01:30", env=env)
    assert r.returncode == 0 and "daylight" not in r.stderr, r.stderr
    # The menus' defaults are outside every zone's transitions.
    start = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    for name in sorted(zoneinfo.available_timezones()):
        zone = zoneinfo.ZoneInfo(name)
        assert scheduler.dst_clashes(4, 0, zone, start, days=366) == [], name
        assert scheduler.dst_clashes(5, 30, zone, start, days=366) == [], name


# --- restore -x never deletes; restore -r only where it may ------------------------------------

@needs_root
def test_restore_x_of_a_level_backup_deletes_nothing(home):
    tr = home
    env = tr.env()
    l0, l1 = tr.base / "l0.tar", tr.base / "l1.tar"
    assert aixsmit("cmd", "backup", "-0", "-u", "-f", l0, "/home", "--root", tr.path, env=env).returncode == 0
    tr.p("/home/b").unlink()
    tr.p("/home/c").write_text("c1")
    assert aixsmit("cmd", "backup", "-1", "-u", "-f", l1, "/home", "--root", tr.path, env=env).returncode == 0
    work = tr.base / "work"
    work.mkdir()
    (work / "mine").write_text("the operator's file")
    (work / "b").write_text("b kept")
    r = aixsmit("cmd", "restore", "-x", "-f", l1, "--target", work, env=env)
    assert r.returncode == 0, r.stderr
    assert (work / "mine").read_text() == "the operator's file" and (work / "b").read_text() == "b kept"
    assert (work / "c").read_text() == "c1"
    # restore -r: not into a directory that holds something else.
    r = aixsmit("cmd", "restore", "-r", "-f", l0, "--target", work, env=env)
    assert r.returncode == 2 and "neither empty nor a mount point" in r.stderr and (work / "mine").exists()
    whole = tr.base / "whole"
    whole.mkdir()
    assert aixsmit("cmd", "restore", "-r", "-f", l0, "--target", whole, env=env).returncode == 0
    r = aixsmit("cmd", "restore", "-r", "-f", l1, "--target", whole, env=env)
    assert r.returncode == 0, r.stderr
    assert "restore: removing ./b: l1.tar records it as deleted" in r.stdout
    assert diff(snapshot(str(tr.p("/home")), skip=("lost+found",)), snapshot(str(whole), skip=("lost+found",))) == []


@needs_root
def test_a_chain_restored_onto_its_mount_point_keeps_what_no_backup_held(home):
    """Onto the live mount point: files made after the last backup (never in any backup) are
    kept; a name a backup held and a later one recorded as deleted is removed, named first,
    and only with --yes (no terminal to ask); a system file system is refused."""
    tr = home
    env = tr.env()
    assert add(tr, "user", "/home", "--daily", "04:00", "--dest", tr.dest).returncode == 0
    assert sch.run_schedule("user1", quiet, now=SUNDAY) == 0  # full: a, b
    tr.p("/home/b").unlink()
    tr.p("/home/c").write_text("c1")
    assert sch.run_schedule("user1", quiet, now=SUNDAY + dt.timedelta(days=1)) == 0  # level 1: b deleted, c
    # After the last backup: new files, a change, and b back (from elsewhere).
    tr.p("/home/newtop").write_text("made after the backup")
    tr.p("/home/sub").mkdir()
    tr.p("/home/sub/f5").write_text("made after the backup too")
    tr.p("/home/a").write_text("a changed")
    tr.p("/home/b").write_text("b again")
    target = tr.p("/home")
    restore = ("cmd", "schedule", "restore", "user1", "--fs", "/home", "--target", target)
    r = aixsmit(*restore, "--dry-run", env=env, input="")
    assert r.returncode == 0, r.stderr
    assert f"restore: will remove ./b from {target}: a backup held it and 20261102-040000.L1.tar records it as " \
           "deleted" in r.stdout
    assert f"restore: keeps 2 name(s) in {target} that no backup of the chain held: ./newtop ./sub" in r.stdout
    assert "will remove ./newtop" not in r.stdout and "will remove ./sub" not in r.stdout
    # No terminal and no --yes: nothing is removed, nothing restored.
    r = aixsmit(*restore, env=env, input="")
    assert r.returncode == 1 and "give --yes to remove them" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert tr.p("/home/b").read_text() == "b again" and tr.p("/home/a").read_text() == "a changed"
    # Never onto a system file system, named by mistake.
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--target", "/", "--dry-run", env=env)
    assert r.returncode == 2 and "is the system file system /" in r.stderr, r.stderr
    # A directory that is neither empty nor a mount point is refused before anything is read.
    other = tr.base / "other"
    other.mkdir()
    (other / "keep").write_text("mine")
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--target", other, env=env)
    assert r.returncode == 2 and "neither empty nor a mount point" in r.stderr and (other / "keep").exists()
    r = aixsmit(*restore, "--yes", env=env, input="")
    assert r.returncode == 0, r.stderr
    assert "restore: removing ./b: 20261102-040000.L1.tar records it as deleted" in r.stdout
    assert not tr.p("/home/b").exists() and tr.p("/home/a").read_text() == "a0" and tr.p("/home/c").read_text() == "c1"
    assert tr.p("/home/newtop").read_text() == "made after the backup"
    assert tr.p("/home/sub/f5").read_text() == "made after the backup too"


@needs_root
def test_restore_r_of_one_level_onto_a_mount_point_removes_nothing_unknown(home):
    """restore -r of a level 1 onto a mount point with nothing restored there before: no
    archive tells what the file system held, so nothing is removed (the old way removed every
    name the level did not list)."""
    tr = home
    env = tr.env()
    l0, l1 = tr.base / "l0.tar", tr.base / "l1.tar"
    assert aixsmit("cmd", "backup", "-0", "-u", "-f", l0, "/home", "--root", tr.path, env=env).returncode == 0
    tr.p("/home/b").unlink()
    assert aixsmit("cmd", "backup", "-1", "-u", "-f", l1, "/home", "--root", tr.path, env=env).returncode == 0
    tr.p("/home/late").write_text("after the backups")
    r = aixsmit("cmd", "restore", "-r", "-f", l1, "--target", tr.p("/home"), env=env, input="")
    assert r.returncode == 0, r.stderr
    assert tr.p("/home/late").read_text() == "after the backups" and "removing" not in r.stdout


# --- the menus -------------------------------------------------------------------------------

SAMPLES = {"id": "user1", "when": "sun@05:30", "dest": "/backup", "keep": "3", "daily": "04:00", "fullday": "mon",
           "weekly": "sat@06:00", "fs": "/home /data", "all": "no", "dryrun": "yes", "date": "2026-11-06", "target": "/restore/home",
           "device": "/backup/home.L0.tar"}


@pytest.mark.parametrize("host", ["linux", "aix"])
def test_every_schedule_and_restore_dialog_parses_with_the_command_s_own_parser(host):
    from aixsmit.cli import build_parser
    from aixsmit.smit import command, model

    tree = model.load_tree()
    names = ["schedsys", "scheduser", "schedlist", "schedrun", "schedchange", "schedrm", "schedrestore", "restfilesys",
             "schedchanges"]
    assert {"schedrestore", "restfilesys"} <= {i.next for i in tree.get("restfs").items}
    assert "restfs" in {i.next for i in tree.get("fs").items} and "restfs" in {i.next for i in tree.get("schedmenu").items}
    for name in names:
        d = tree.get(name)
        values = {f.name: SAMPLES[f.name] for f in d.fields}
        argv = command.build(d, values, host, root="/mnt/sys")
        assert argv[:2] == ["aixsmit", "cmd"], argv
        args = build_parser().parse_args(argv[2:])
        assert args.func is not None, name
        if name == "schedchange":
            assert (args.id, args.daily, args.full_day, args.filesystems, args.dest, args.keep) == \
                ("user1", "04:00", "mon", ["/home", "/data"], "/backup", 3)
        if name == "schedrestore":
            assert args.dry_run and args.fs == "/home /data" and args.date == "2026-11-06"
        if name == "restfilesys":
            assert args.r and args.f == "/backup/home.L0.tar" and args.target == "/restore/home"
