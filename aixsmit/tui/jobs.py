"""Running and Recent Commands (fastpath ``jobs``): commands started from COMMAND STATUS run
detached from the terminal; this lists them and reopens COMMAND STATUS on one."""

from __future__ import annotations

import time

from textual.app import ComposeResult

from ..fs.mounts import visible
from ..smit.model import Screen as ScreenDef
from .screens import CommandStatusScreen, MenuList, SmitScreen


class JobsScreen(SmitScreen):
    INSTRUCTIONS = "Move cursor to desired item and press Enter."

    def body(self) -> ComposeResult:
        from ..jobs import detached

        self.jobs = list(reversed(detached.all_jobs()))
        labels = [f"{j.status:<8} {time.strftime('%b %d %H:%M', time.localtime(j.start))}  "
                  f"{visible(j.command)[:56]}" for j in self.jobs]
        yield MenuList(labels or ["(No command has been started from aixsmit in the last week.)"], id="jobs")

    def on_mount(self) -> None:
        self.query_one(MenuList).focus()

    def on_menu_list_chosen(self, event: MenuList.Chosen) -> None:
        if not self.jobs:
            return
        job = self.jobs[event.index]
        d = ScreenDef(kind="dialog", id="jobs", title=job.title, command={self.app.host_name: job.argv},
                      progress="backup" if job.progress else "")
        self.app.push_screen(CommandStatusScreen(d, job.argv, progress=job.progress, job=job))
