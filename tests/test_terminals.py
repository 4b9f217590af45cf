"""Every terminal, slow links, and a backup that survives a cut SSH connection (tmux, sshd)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import need_tool, needs_root
from test_tmux_e2e import Tmux, gone, long_backup, newest_job

pytestmark = [needs_root, need_tool("tmux")]
PY = shlex.quote(sys.executable)


def base_env(tmp_path, **kw) -> dict:
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "AIXSMIT_STATE_DIR": str(tmp_path / "state"),
           "LANG": "C.UTF-8", "TERM": "xterm-256color", "COLORTERM": ""}  # tmux's own COLORTERM is not the terminal's
    env.update(kw)
    return env


@pytest.mark.parametrize("term", ["xterm-256color", "xterm", "screen", "linux", "vt100"])
def test_each_term_shows_the_menu(tmp_path, term):
    t = Tmux(f"aixsmit-term-{os.getpid()}-{term}", f"{PY} -m aixsmit fs", base_env(tmp_path, TERM=term))
    try:
        s = t.wait_for("Move cursor to desired item and press Enter.")
        assert "File Systems" in s.splitlines()[0]
        assert "List All Mounted File Systems" in s
        labels = "Esc+1=Help" if term == "vt100" else "F1=Help"
        assert labels in s
        t.keys("Down", "Enter")
        s = t.wait_for("COMMAND STATUS")
        t.wait_for("Command: OK")
    finally:
        t.kill()


def _non_ascii(text: str) -> set[str]:
    return {c for c in text if ord(c) > 127}


def test_ascii_mode_with_a_c_locale(tmp_path):
    """LANG=C on a vt100: every screen is plain ASCII - menu, dialog, F4 list, COMMAND STATUS."""
    t = Tmux(f"aixsmit-ascii-{os.getpid()}", f"{PY} -m aixsmit", base_env(tmp_path, TERM="vt100", LANG="C"))
    try:
        seen = [t.wait_for("Move cursor to desired item")]
        t.keys("Down", "Enter")
        seen.append(t.wait_for("Logical Volume Manager"))
        t.keys("Down", "Down", "Down", "Enter")  # past File Systems and Files & Directories
        seen.append(t.wait_for("Back Up the System"))
        t.keys("Enter")
        seen.append(t.wait_for("Back Up This System to Tape/File"))
        t.keys("Enter")
        seen.append(t.wait_for("[Entry Fields]"))
        t.keys("Down", "F4")
        seen.append(t.wait_for("Move cursor to desired item and press Enter."))
        assert "+----" in seen[-1]  # an ASCII box
        t.keys("Escape")
        time.sleep(0.4)
        t.keys("3")
        time.sleep(0.5)
        t.keys("F6")  # no destination yet: the error pop-up, in ASCII too
        seen.append(t.wait_for("ERROR MESSAGE"))
        for s in seen:
            assert _non_ascii(s) == set(), s
    finally:
        t.kill()


def test_no_color_keeps_focus_and_selection_visible(tmp_path):
    t = Tmux(f"aixsmit-nocolor-{os.getpid()}", f"{PY} -m aixsmit fs", base_env(tmp_path, NO_COLOR="1"))
    try:
        t.wait_for("Move cursor to desired item")
        screen = subprocess.run(["tmux", "capture-pane", "-t", t.name, "-p", "-e"], capture_output=True, text=True).stdout
        line = next(l for l in screen.splitlines() if "List All File Systems" in l)
        assert "\x1b[7m" in line or ";7m" in line or "[7;" in line  # the highlighted item: reverse video
    finally:
        t.kill()


def measure(tmp_path, term: str, keys=("Down",)) -> tuple[int, int, bytes]:
    out = tmp_path / f"bytes-{term}.out"
    # The pipe is attached during the second of sleep, before the first byte is drawn.
    cmd = "sh -c " + shlex.quote(f"sleep 1; exec {PY} -m aixsmit fs")
    t = Tmux(f"aixsmit-bytes-{os.getpid()}", cmd, base_env(tmp_path, TERM=term))
    try:
        subprocess.run(["tmux", "pipe-pane", "-t", t.name, "-o", f"cat >> {shlex.quote(str(out))}"], check=True)
        t.wait_for("Move cursor to desired item")
        time.sleep(1.0)
        full = out.stat().st_size
        for k in keys:
            t.keys(k)
        time.sleep(1.0)
        return full, out.stat().st_size - full, out.read_bytes()
    finally:
        t.kill()


def test_bytes_for_a_move_and_a_full_screen_at_16_colours(tmp_path):
    full, move, data = measure(tmp_path, "xterm")
    assert full < 16 * 1024, f"{full} bytes for the first full 80x24 screen"
    assert move < 1024, f"{move} bytes for moving down one menu item"
    assert b"38;2;" not in data and b"38;5;" not in data  # 16 colours only


def test_dumb_terminal_gets_no_truecolor(tmp_path):
    full, _, data = measure(tmp_path, "dumb")
    assert b"38;2;" not in data and b"48;2;" not in data


def test_nothing_is_sent_while_idle(tmp_path):
    out = tmp_path / "idle.out"
    t = Tmux(f"aixsmit-idle-{os.getpid()}", f"{PY} -m aixsmit mksysb", base_env(tmp_path, TERM="xterm"))
    try:
        t.wait_for("[Entry Fields]")
        time.sleep(0.5)
        subprocess.run(["tmux", "pipe-pane", "-t", t.name, "-o", f"cat >> {shlex.quote(str(out))}"], check=True)
        time.sleep(3)
        assert not out.exists() or out.stat().st_size == 0  # no cursor blink, no animation
    finally:
        t.kill()


# --- a real SSH connection -------------------------------------------------------------------

@pytest.fixture
def sshd(tmp_path):
    if not os.path.exists("/usr/sbin/sshd") or not shutil.which("ssh"):
        pytest.skip("openssh-server is not installed (scripts/install-deps installs it as root)")
    d = tmp_path / "ssh"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client")], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.makedirs("/run/sshd", exist_ok=True)
    cfg = d / "sshd_config"
    cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
                   f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                   "PasswordAuthentication no\nUsePAM no\nStrictModes no\nAcceptEnv LANG TERM AIXSMIT_*\n"
                   "ClientAliveInterval 0\n")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    if proc.poll() is not None:
        pytest.skip(f"sshd could not start: {proc.stdout.read().decode(errors='replace')[:200]}")
    try:
        yield {"port": port, "key": str(d / "client"), "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_backup_over_ssh_survives_a_cut_connection(troot, tmp_path, sshd):
    tr = troot
    img = long_backup(tr)
    state = tmp_path / "state"
    remote = (f"cd / && env HOME={tmp_path} AIXSMIT_STATE_DIR={state} AIXSMIT_CONFIG={tr.config} LANG=C.UTF-8 "
              f"{PY} -m aixsmit --root {tr.path} mksysb")
    ssh = (f"ssh -tt -p {sshd['port']} -i {sshd['key']} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
           f"-o LogLevel=ERROR root@127.0.0.1 {shlex.quote(remote)}")
    t = Tmux(f"aixsmit-ssh-{os.getpid()}", ssh, base_env(tmp_path, TERM="xterm"))
    try:
        t.wait_for("[Entry Fields]", timeout=30)
        t.type(str(img))
        t.keys("Enter")
        t.wait_for("Command: running", timeout=30)
        # Cut the connection: kill the ssh client, as a dropped link would.
        subprocess.run(["pkill", "-KILL", "-f", f"ssh -tt -p {sshd['port']}"])
    finally:
        t.kill()
    assert not img.exists()
    end = time.monotonic() + 120
    while time.monotonic() < end and not img.exists():
        time.sleep(0.2)
    assert img.exists(), "the backup did not finish after the connection was cut"
    # Logging in again: the job is there, finished, with its output.
    job = newest_job(dict(os.environ, AIXSMIT_STATE_DIR=str(state), HOME=str(tmp_path)))
    assert job["status"] == "OK"
    assert "0512-038 mksysb: Backup Completed Successfully." in open(job["log"]).read()
    # The remote TUI went away with the connection, and does not linger.
    assert gone(f"aixsmit --root {tr.path} mksysb")
