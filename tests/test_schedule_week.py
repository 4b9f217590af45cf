"""A week of a user schedule, run exactly as cron and systemd would run it: the cron line's
command through /bin/sh with cron's rules, then the timer's service ExecStart= with systemd's
quoting, one simulated day at a time (AIXSMIT_NOW), with a full on day 0, deletions and renames
in between, a skipped day, a failing day; then the state of day 5 restored into an empty
directory equals the tree of day 5 (linux-backup.md §2.2-§2.3; issue "Schedules that run")."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from aixsmit.jobs import schedule as sch
from aixsmit.state import mount_lock

from conftest import aixsmit, need_tool, needs_root, run
from treecmp import diff, snapshot

pytestmark = [needs_root, need_tool("systemd-analyze")]

SUNDAY = dt.datetime(2026, 11, 1, 4, 0)


def stand_ins(bindir):
    """logger and sendmail that write down what they were given."""
    bindir.mkdir()
    for name in ("logger", "sendmail"):
        p = bindir / name
        p.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{bindir}/{name}.args"\ncat >> "{bindir}/{name}.in"\nexit 0\n')
        p.chmod(0o755)


def cron_command(line: str) -> tuple[str, str]:
    """crontab(5): the sixth field on (after the user) is the command; an unescaped % ends it
    and what follows is its input; \\% is a %."""
    command = line.split(None, 6)[6]
    parts = re.split(r"(?<!\\)%", command, maxsplit=1)
    return parts[0].replace("\\%", "%"), (parts[1].replace("%", "\n") if len(parts) > 1 else "")


def run_cron_line(cron_file, sid, env) -> subprocess.CompletedProcess:
    lines = cron_file.read_text().splitlines()
    line = next(l for l in lines if l.endswith(f" {sid}") and not l.startswith("#"))
    assert line.startswith("0 4 * * * root ")
    command, stdin = cron_command(line)
    return subprocess.run(["/bin/sh", "-c", command], env=env, input=stdin, capture_output=True, text=True,
                          timeout=300)


def systemd_words(value: str) -> list[str]:
    """systemd.syntax(7) quoting (double quotes, backslash escapes), then %% and $$ undone."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


def run_exec_start(service, env) -> subprocess.CompletedProcess:
    text = service.read_text()
    env = dict(env)
    for line in text.splitlines():
        if line.startswith("Environment="):
            for word in systemd_words(line.split("=", 1)[1]):
                k, _, v = word.partition("=")
                env[k] = v
    argv = systemd_words(next(l for l in text.splitlines() if l.startswith("ExecStart=")).split("=", 1)[1])
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_a_week_of_runs_as_written_then_day_5_restored(troot, tmp_path, monkeypatch):
    tr = troot
    tr.loop_mount("/home", size_mb=8)
    home = tr.p("/home")
    # The destination is a 1 MiB tmpfs: day 4's big file does not fit, and that run fails.
    tr.p("/backup").mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=1m", "aixsmit-test-dest", tr.p("/backup"))
    # A state directory whose name needs quoting in a cron line and in a unit file.
    state = tr.base / "state %d $HOME 'q\""
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(state))
    units, crondir, bindir = tmp_path / "units", tmp_path / "cron.d", tmp_path / "bin"
    stand_ins(bindir)
    env = tr.env(AIXSMIT_STATE_DIR=state, AIXSMIT_CRON_DIR=crondir, AIXSMIT_UNIT_DIR=units)
    env.pop("AIXSMIT_SCHEDULER", None)
    r = aixsmit("cmd", "schedule", "add", "user", "/home", "--daily", "04:00", "--full-day", "sun",
                "--dest", tr.p("/backup"), "--root", tr.path, env=env)
    assert r.returncode == 0, r.stderr
    assert "WARNING: no cron daemon is running on this machine" in r.stderr
    cron_file = crondir / "aixsmit"
    # What cron gives a job: its own small environment; PATH (with the stand-ins first) and the
    # simulated day are the only things substituted.
    cron_path = next(l for l in cron_file.read_text().splitlines() if l.startswith("PATH=")).split("=", 1)[1]
    base_env = {"HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": f"{bindir}:{cron_path}"}
    day_env = lambda d: {**base_env, "AIXSMIT_NOW": (SUNDAY + dt.timedelta(days=d)).isoformat()}  # noqa: E731

    (home / "d").mkdir()
    (home / "a").write_text("a0")
    (home / "b").write_text("b0")
    (home / "d" / "c").write_text("c0")
    results = {}
    # Days 0-2 by cron.
    for day in range(3):
        if day == 1:
            (home / "b").unlink()
            (home / "d" / "new").write_text("new on day 1")
        if day == 2:
            os.rename(home / "d" / "c", home / "d" / "c-renamed")
            (home / "a").write_text("a2, changed on day 2")
        p = run_cron_line(cron_file, "user1", day_env(day))
        results[day] = (p.returncode, p.stdout, p.stderr)
        assert p.returncode == 0 and p.stdout == "" and p.stderr == "", results[day]
    # From day 3 on the schedules are systemd timers.
    r = aixsmit("cmd", "schedule", "install", "--via", "systemd", env=env)
    assert r.returncode == 0, r.stderr
    assert not cron_file.exists()
    service, timer = units / "aixsmit-user1.service", units / "aixsmit-user1.timer"
    v = subprocess.run(["systemd-analyze", "verify", str(timer), str(service)], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    assert "OnCalendar=*-*-* 04:00:00\nPersistent=true\n" in timer.read_text()
    c = subprocess.run(["systemd-analyze", "calendar", "*-*-* 04:00:00"], capture_output=True, text=True)
    assert c.returncode == 0 and "Normalized form: *-*-* 04:00:00" in c.stdout
    # Day 3: skipped, another run holds the lock.
    (home / "e").write_text("e3")
    with mount_lock("another run"):
        p = run_exec_start(service, day_env(3))
    assert p.returncode == 1 and p.stdout == "", p.stdout
    # Day 4: fails, the archive does not fit.
    with open(home / "big", "wb") as f:
        f.write(os.urandom(2 << 20))
    p = run_exec_start(service, day_env(4))
    assert p.returncode != 0
    (home / "big").unlink()
    # Day 5: a directory renamed, a file deleted.
    os.rename(home / "d", home / "d5")
    (home / "e").unlink()
    (home / "f").write_text("f5")
    assert run_exec_start(service, day_env(5)).returncode == 0
    day5 = snapshot(str(home))
    # Day 6: more changes, which the restore of day 5 must not show.
    (home / "a").write_text("a6")
    (home / "g").write_text("g6")
    assert run_exec_start(service, day_env(6)).returncode == 0

    listed = json.loads(aixsmit("cmd", "schedule", "list", "--json", env=env).stdout)
    assert listed["scheduler"]["kind"] == "systemd" and listed["scheduler"]["running"] is False
    records = sch.records("user1")
    assert [(r["start"][:10], r["result"]) for r in records] == [
        ("2026-11-01", "OK"), ("2026-11-02", "OK"), ("2026-11-03", "OK"), ("2026-11-04", "SKIPPED"),
        ("2026-11-05", "FAILED"), ("2026-11-06", "OK"), ("2026-11-07", "OK")]
    assert all(os.path.exists(r["log"]) for r in records)
    assert "tar exit status 2" in open(records[4]["log"]).read()
    assert listed["schedules"][0]["last"]["result"] == "OK"
    # The skipped and the failed day were told: system log and a mail to root, each once.
    said = (bindir / "logger.args").read_text().splitlines()
    assert len(said) == 2 and "user1 skipped at 2026-11-04 04:00" in said[0] and "failed at 2026-11-05" in said[1]
    mails = (bindir / "sendmail.in").read_text()
    assert mails.count("To: root\n") == 2 and "Wrote only" in mails
    assert records[3]["told"] == records[4]["told"] == ["syslog", "mail to root"]
    # One chain: the full of day 0 and five dailies (day 4 left nothing behind).
    archives = sorted(str(p.relative_to(tr.p("/backup/home"))) for p in tr.p("/backup/home").rglob("*.tar"))
    assert archives == ["20261101-040000/20261101-040000.L0.tar"] + [
        f"20261101-040000/202611{d:02d}-040000.L1.tar" for d in (2, 3, 6, 7)]
    # Day 5 (Friday 6 November) restored into an empty directory.
    target = tr.base / "day5"
    target.mkdir()
    r = aixsmit("cmd", "schedule", "restore", "user1", "--fs", "/home", "--date", "2026-11-06", "--target", target,
                env=env)
    assert r.returncode == 0, r.stderr
    assert diff(day5, snapshot(str(target))) == []
    # What each run changed, read from the archives without extracting them.
    r = aixsmit("cmd", "schedule", "changes", "user1", "--fs", "/home", "--json", env=env)
    assert r.returncode == 0, r.stderr
    runs = {c["stamp"][:8]: c for c in json.loads(r.stdout)}
    assert runs["20261102"]["deleted"] == ["./b"] and runs["20261102"]["added"] == ["./d/new"]
    assert runs["20261103"]["renamed"] == [["./d/c", "./d/c-renamed"]] and runs["20261103"]["changed"] == ["./a"]
    day5_runs = runs["20261106"]
    assert day5_runs["added"] == ["./d5", "./f"] and day5_runs["deleted"] == ["./d"]  # e came and went unseen
    assert sorted(day5_runs["renamed"]) == [["./d/c-renamed", "./d5/c-renamed"], ["./d/new", "./d5/new"]]
    text = aixsmit("cmd", "schedule", "changes", "user1", "--fs", "/home", env=env).stdout
    assert "20261103-040000  level 1  20261103-040000.L1.tar: 0 added, 1 changed, 1 renamed, 0 deleted" in text
    assert "  > ./d/c -> ./d/c-renamed" in text
