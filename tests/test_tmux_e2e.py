"""End to end in a real terminal: tmux runs aixsmit, keys are typed, the screen is read."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need_tool, needs_root

pytestmark = [needs_root, need_tool("tmux")]


def newest_job(env: dict, timeout: float = 30) -> dict:
    """The newest job of ``aixsmit cmd jobs --json``, once it is no longer running."""
    import json

    end = time.monotonic() + timeout
    while True:
        jobs = json.loads(subprocess.run([sys.executable, "-m", "aixsmit", "cmd", "jobs", "--json"], env=env,
                                         capture_output=True, text=True).stdout)
        if (jobs and jobs[-1]["status"] != "running") or time.monotonic() > end:
            return jobs[-1] if jobs else {}
        time.sleep(0.2)


def all_jobs(env: dict) -> list[dict]:
    """Every job ``aixsmit cmd jobs --json`` lists, oldest first."""
    import json

    return json.loads(subprocess.run([sys.executable, "-m", "aixsmit", "cmd", "jobs", "--json"], env=env,
                                     capture_output=True, text=True).stdout)


def gone(pattern: str, timeout: float = 15) -> bool:
    """No process matches ``pattern`` (waiting a while: leaving takes a moment under load)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 1:
            return True
        time.sleep(0.2)
    return False


class Tmux:
    def __init__(self, name: str, cmd: str, env: dict, width: int = 80, height: int = 24):
        self.name = name
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        argv = ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), f"env {envs} {cmd}; sleep 30"]
        for attempt in range(5):
            # A tmux server whose last session was just killed may still be exiting: try again.
            if subprocess.run(argv, capture_output=True).returncode == 0:
                break
            time.sleep(0.3)
        else:
            subprocess.run(argv, check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text not in self.screen():
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} stayed on the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def tmux_env(troot, tmp_path):
    env = {k: v for k, v in troot.env().items() if k.startswith("AIXSMIT_")}
    env.update(HOME=str(tmp_path), TERM="xterm-256color", PATH=os.environ["PATH"], LANG="C.UTF-8")
    return env


def test_mksysb_in_a_real_terminal(troot, tmp_path, tmux_env):
    tr = troot
    tr.loop_mount("/home")
    for i in range(300):
        tr.p(f"/home/file{i}").write_text(str(i))
    out = tr.base / "out"
    out.mkdir()
    t = Tmux(f"aixsmit-e2e-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit --root {shlex.quote(str(tr.path))} mksysb",
             tmux_env)
    try:
        t.wait_for("Back Up This System to Tape/File")
        t.wait_for("[Entry Fields]")
        t.type(str(out / "sys.mksysb"))
        t.keys("F6")
        s = t.wait_for("SHOW COMMAND STRING")
        assert "aixsmit cmd mksysb" in s
        t.keys("Enter")
        t.wait_gone("SHOW COMMAND STRING")
        t.keys("Enter")
        t.wait_for("COMMAND STATUS")
        t.wait_for("Command: OK", timeout=120)
        s = t.wait_for("0512-038 mksysb: Backup Completed Successfully.", timeout=5)
        assert "100%" in s
        t.keys("F10")
        t.wait_for("Press Enter to exit the application.")
        t.keys("Enter")
        time.sleep(0.5)
    finally:
        t.kill()
    assert (out / "sys.mksysb").exists()
    script = (tmp_path / "smit.script").read_text()
    assert f"aixsmit cmd mksysb --root {tr.path} -i {out / 'sys.mksysb'}" in script


def test_esc_digit_in_a_real_terminal(troot, tmp_path, tmux_env):
    """Esc, then a digit, as typed on a terminal without function keys (TERM=vt100)."""
    env = dict(tmux_env, TERM="vt100")
    t = Tmux(f"aixsmit-esc-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit fs", env)
    try:
        s = t.wait_for("File Systems")
        assert "Esc+1=Help" in s and "Esc+0=Exit" in s  # vt100: Esc+N labels
        t.keys("Escape")
        time.sleep(0.4)  # slower than a terminal's escape sequence: a person typing
        t.keys("1")
        t.wait_for("CONTEXTUAL HELP")
        t.keys("Escape")
        time.sleep(0.4)
        t.keys("3")
        time.sleep(0.5)
        assert "CONTEXTUAL HELP" not in t.screen()
        t.keys("Escape")
        time.sleep(0.4)
        t.keys("0")
        t.wait_for("Press Enter to exit the application.")
    finally:
        t.kill()


def test_esc_digit_typed_fast_in_a_field(tmp_path, tmux_env):
    """Esc and the digit in one read (typed fast, or over SSH): still F7 and F1, not the
    Option characters Textual would make of them ("¶", "¡") typed into the field."""
    env = dict(tmux_env, TERM="vt100")
    t = Tmux(f"aixsmit-escfast-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit mksysb", env)
    try:
        t.wait_for("Backup DEVICE or FILE")
        t.type("/backup/x")
        t.keys("Escape", "7")  # one send: the two bytes arrive together
        t.wait_for("Esc+3=Cancel        Esc+8=Image")  # the F7 window's footer
        t.type("/y")
        t.keys("Enter")
        s = t.wait_for("[/backup/x/y")
        assert "¶" not in s
        t.keys("Escape", "1")
        s = t.wait_for("CONTEXTUAL HELP")
        assert "¡" not in s
    finally:
        t.kill()


def test_walkthrough_in_a_real_terminal(troot, tmp_path, tmux_env):
    """The guide in a real terminal: its steps 3-7 are one job that outlives the terminal. The
    terminal goes away in the middle of the backup: the image still completes, the user file
    systems are mounted again, and a new guide picks the job up and reaches the summary."""
    from aixsmit.fs.mounts import read_mountinfo

    tr = troot
    tr.loop_mount("/home")
    tr.p("/home/keep").write_text("keep")
    tr.bulk("/srv-data", 300)  # system data: the backup takes a while
    img = tr.base / "guided.mksysb"
    cmd = f"{shlex.quote(sys.executable)} -m aixsmit --root {shlex.quote(str(tr.path))} walkthrough"
    t = Tmux(f"aixsmit-walk-{os.getpid()}", cmd, tmux_env)
    try:
        t.wait_for("Step 1 of 8")
        t.keys("Enter")
        t.wait_for("Step 2 of 8")
        t.type(str(img))
        t.keys("Enter")
        t.wait_for("Steps 3-7 of 8")
        t.keys("Enter")
        t.wait_for("Command: running")
    finally:
        t.kill()  # the terminal goes away while /home is unmounted
    end = time.monotonic() + 120
    while time.monotonic() < end and not img.exists():
        time.sleep(0.2)
    job = newest_job(dict(os.environ, **tmux_env))
    assert job["status"] == "OK" and "aixsmit cmd sysbackup" in job["command"], job
    assert any(m.path == str(tr.p("/home")) for m in read_mountinfo())
    assert img.exists() and tr.p("/home/keep").read_text() == "keep"
    # The new guide shows that job's end at once (no second backup), and Enter its summary.
    t = Tmux(f"aixsmit-walk2-{os.getpid()}", cmd, tmux_env)
    try:
        s = t.wait_for("Command: OK", timeout=30)
        assert "Enter=Summary" in s and "Result:           OK" in s, s
        t.keys("Enter")  # Enter=Summary
        s = t.wait_for("Step 8 of 8")
        assert "Verified:         OK" in s and "Result:           OK" in s and str(img) in s
    finally:
        t.kill()
    assert [j["id"] for j in all_jobs(dict(os.environ, **tmux_env))] == [job["id"]]


def long_backup(tr) -> Path:
    """A root whose mksysb is still running when a test cuts the terminal: 400 MB on /home
    (tar reads it from the page cache at over 500 MB/s here). Returns where the image goes."""
    tr.loop_mount("/home", size_mb=520)
    tr.bulk("/home/bulk", 400)
    out = tr.base / "out"
    out.mkdir()
    return out / "sys.mksysb"


def test_backup_outlives_the_terminal(troot, tmp_path, tmux_env):
    """Start a mksysb in tmux, kill the tmux session in the middle: the image still completes,
    and a new aixsmit shows the job as finished, with its output."""
    tr = troot
    img = long_backup(tr)
    t = Tmux(f"aixsmit-hup-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit --root {shlex.quote(str(tr.path))} mksysb",
             tmux_env)
    try:
        t.wait_for("[Entry Fields]")
        t.type(str(img))
        t.keys("Enter")
        t.wait_for("Command: running")
    finally:
        t.kill()  # the terminal goes away at once: the TUI gets SIGHUP
    assert not img.exists()  # it was still running
    end = time.monotonic() + 120
    while time.monotonic() < end and not img.exists():
        time.sleep(0.2)
    assert img.exists()
    job = newest_job(dict(os.environ, **tmux_env))
    assert job["status"] == "OK" and "aixsmit cmd mksysb" in job["command"]
    assert "0512-038 mksysb: Backup Completed Successfully." in open(job["log"]).read()
    # No TUI left behind, spinning or not.
    assert gone(f"aixsmit --root {tr.path} mksysb")
    # A new aixsmit says so and shows it.
    t = Tmux(f"aixsmit-back-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit", tmux_env)
    try:
        t.wait_for("Commands started earlier")
        t.keys("Enter")
        t.wait_for("Running and Recent Commands")
        t.keys("Enter")
        s = t.wait_for("0512-038 mksysb: Backup Completed Successfully.")
        assert "Command: OK" in s
    finally:
        t.kill()
