"""The TUI's two measured costs:

1. start-up: from launch to the first menu on screen, in a real terminal (tmux), against a bare
   Textual app that shows one list - same interpreter, same terminal (goal: at most 1.3x);
2. the log pane: a command printing 200,000 lines shown in COMMAND STATUS (from Enter to the
   last line and "Command: OK" on screen), against the same command writing to /dev/null
   (goal: at most 1.3x) and into a pipe read by cat; for a command that writes a line at a
   time and for one that writes in blocks. The end is the first frame with the last line and
   "Command: OK", turned into the bytes a terminal gets (the test harness itself draws no
   frames), as the real app does.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))  # tui_helpers, for the pane
from _util import best_of_each, command, report  # noqa: E402

BARE = '''
from textual.app import App
from textual.widgets import OptionList
class Bare(App):
    def compose(self):
        yield OptionList("System Storage Management (Physical & Logical Storage)")
Bare().run()
'''


def first_screen(cmd: str, marker: str, env: dict) -> float:
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    t = time.perf_counter()
    argv = ["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", f"env {envs} {cmd}"]
    while subprocess.run(argv, capture_output=True).returncode != 0:  # a tmux server may be exiting
        if time.perf_counter() - t > 10:
            raise SystemExit("tmux would not start a session")
        time.sleep(0.2)
        t = time.perf_counter()
    try:
        while time.perf_counter() - t < 30:
            out = subprocess.run(["tmux", "capture-pane", "-t", name, "-p"], capture_output=True, text=True).stdout
            if marker in out:
                return time.perf_counter() - t
            time.sleep(0.005)
        raise SystemExit(f"{marker!r} never appeared")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


# The command: 200,000 lines from Python, written either a line at a time (as a program that
# flushes every line does, or any Python program under PYTHONUNBUFFERED) or in 8 KB blocks (as
# tar, find or seq write into a pipe or a file). Set here, not taken from the environment. The
# goal is for 200,000 lines; the block writer also runs with ten times as many lines, to tell
# the pane's fixed cost (building the screen, drawing the end) from what grows with the output.
WRITERS = [
    ("a write per line", 200_000, 1, 1.3),
    ("8 KB blocks", 200_000, 8192, 1.3),
    ("8 KB blocks", 2_000_000, 8192, None),
]


def flood(n: int, buffering: int) -> list[str]:
    return [sys.executable, "-c", f"import os\nout = os.fdopen(1, 'w', buffering={buffering})\n"
            f"for i in range({n}): out.write(f'line {{i}} of output\\n')"]


async def log_pane(argv: list[str], n: int) -> float:
    from pathlib import Path

    from textual.app import App
    from tui_helpers import make

    from aixsmit.jobs import detached
    from aixsmit.smit.model import Screen as Def
    from aixsmit.tui.screens import CommandStatusScreen

    work = tempfile.mkdtemp()
    app = make(Path(work), "fs")
    d = Def(kind="dialog", id="flood", title="Flood", command={"linux": argv})
    # The test harness draws no frames to a terminal: each frame is turned into the bytes a
    # terminal would get here (as the real app does), and written to /dev/null. The time taken
    # is the moment those bytes have shown both the last line and "Command: OK".
    null = os.open(os.devnull, os.O_WRONLY)
    shown: list[float] = []
    seen: set[str] = set()
    last = f"line {n - 1} of output"
    screen = None
    display = App._display

    def to_terminal(self, on, update):
        display(self, on, update)
        if update is not None and hasattr(update, "render_segments"):
            out = update.render_segments(self.console)
            os.write(null, out.encode())
            if screen is not None and not shown:
                seen.update(s for s in ("Command: OK", last) if s in out)
                if len(seen) == 2:
                    shown.append(time.perf_counter())

    App._display = to_terminal
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            # As in use, the menus have been open a moment when Enter is pressed (their spare
            # supervisor is ready by then).
            await pilot.pause(1.5)
            t, wall = time.perf_counter(), time.time()
            app.run_command(d, argv)  # as Enter on a dialog does
            screen = app.screen
            assert isinstance(screen, CommandStatusScreen)
            # Polled lightly (pilot.pause would walk every widget's queue each time, slowing
            # the app it measures).
            while not shown:
                if time.perf_counter() - t > 60:
                    raise SystemExit(f"the last line and Command: OK never reached the terminal (saw {seen})")
                await asyncio.sleep(0.002)
            took = shown[0] - t
            assert "Command: OK" in str(screen.query_one("#status").render()), "the command failed"
            info = detached.read(Path(screen.job.dir))
            JOB_SECONDS.append(info.end - info.start)  # the command itself, start to exit
            AFTER_END.append(took - (info.end - wall))  # from its exit to the frame
    finally:
        App._display = display
        os.close(null)
    shutil.rmtree(work, ignore_errors=True)
    return took


JOB_SECONDS: list[float] = []
AFTER_END: list[float] = []


def main() -> int:
    # The pane is measured as the product runs: with the settings `aixsmit` gives Textual before
    # importing it (frame-rate cap, no animations), not Textual's defaults.
    from aixsmit.cli import _terminal_defaults

    _terminal_defaults()
    print(f"Textual settings: TEXTUAL_FPS={os.environ['TEXTUAL_FPS']}")
    # The commands it runs are jobs: kept in a folder of its own, not among the machine's.
    state, home = tempfile.mkdtemp(prefix="aixsmit-bench-state-"), tempfile.mkdtemp(prefix="aixsmit-bench-home-")
    os.environ["AIXSMIT_STATE_DIR"] = state
    try:
        return _main(home)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _main(home: str) -> int:
    env = {"TERM": "xterm-256color", "HOME": home, "PATH": os.environ["PATH"], "LANG": "C.UTF-8",
           "AIXSMIT_STATE_DIR": os.environ["AIXSMIT_STATE_DIR"]}
    if shutil.which("tmux"):
        # Both start from bytecode, as installed packages do: Textual's was written when pip
        # installed it; the editable install of aixsmit has none until it is written, and
        # none is written where PYTHONDONTWRITEBYTECODE is set (20 ms of compiling each start).
        package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "aixsmit")
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
        bare_py = os.path.join(env["HOME"], "bare.py")
        with open(bare_py, "w") as f:
            f.write(BARE)
        py = shlex.quote(sys.executable)
        ours = min(first_screen(f"{py} -m aixsmit", "Move cursor to desired item", env) for _ in range(5))
        bare = min(first_screen(f"{py} {bare_py}", "System Storage Management", env) for _ in range(5))
        report("aixsmit: start to first menu", ours, bare, "bare Textual list", goal=1.3)
    else:
        print("tmux not installed; start-up benchmark skipped")
    for what, n, buffering, goal in WRITERS:
        argv = flood(n, buffering)

        def piped():
            p1 = subprocess.Popen(argv, stdout=subprocess.PIPE)
            subprocess.run(["cat"], stdin=p1.stdout, stdout=subprocess.DEVNULL, check=True)
            p1.wait()

        JOB_SECONDS.clear()
        AFTER_END.clear()
        t = best_of_each(5, devnull=command(argv), pipe=piped, pane=lambda: asyncio.run(log_pane(argv, n)))
        devnull, pipe, pane = t["devnull"], t["pipe"], t["pane"]
        report(f"  the command's own run in COMMAND STATUS ({n:,} lines, {what})", min(JOB_SECONDS), devnull, "the command > /dev/null")
        report(f"COMMAND STATUS, {n:>9,} lines, {what:<16}", pane, devnull, "the command > /dev/null", goal=goal)
        report(f"COMMAND STATUS, {n:>9,} lines, {what:<16}", pane, pipe, "the command | cat     ")
        after = sorted(AFTER_END)
        print(f"  from the command's exit to the frame showing its end: median {after[len(after) // 2] * 1000:.1f} ms,"
              f" best {after[0] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
