"""Driving the app in tests: an app on a temporary log, waiting for commands to finish."""

from __future__ import annotations

import time

from aixsmit.smit.log import SmitLog
from aixsmit.smit.model import load_tree
from aixsmit.smit.services import SERVICES
from aixsmit.tui.app import AixsmitApp


def make(tmp_path, fastpath="top_menu", root="/", **kw) -> AixsmitApp:
    log = SmitLog.open(str(tmp_path / "smit.log"), str(tmp_path / "smit.script"))
    return AixsmitApp(load_tree(services=set(SERVICES)), fastpath, root, host_name="linux", smit_log=log, **kw)


async def typed(pilot, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


async def until(pilot, cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if cond():
            await pilot.pause(0.2)  # the last lines and the scroll follow the status by a frame
            return
    raise AssertionError("timed out waiting in the TUI")


def text(app) -> str:
    return app.screen_text()


def loop_gaps(app, every: float) -> list[float]:
    """The times between ticks of a timer of ``every`` seconds on the app's event loop: a
    long one is the loop stalled."""
    gaps: list[float] = []
    last = [time.monotonic()]

    def tick():
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    app.set_interval(every, tick)
    return gaps
