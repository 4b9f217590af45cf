"""Running and Recent Commands (fastpath ``jobs``): commands started from COMMAND STATUS run
detached from the terminal; this lists them and reopens COMMAND STATUS on one."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..smit.model import Screen as ScreenDef
from .screens import CommandStatusScreen, SmitScreen


class JobsScreen(SmitScreen):
    INSTRUCTIONS = "Move cursor to desired item and press Enter."

    def body(self) -> ComposeResult:
        from ..jobs import detached

        self.jobs = list(reversed(detached.all_jobs()))
        if not self.jobs:
            yield OptionList(Option("  (No command has been started from aixsmit in the last week.)", disabled=True))
            return
        yield OptionList(*[Option(f"  {j.status:<8} {time.strftime('%b %d %H:%M', time.localtime(j.start))}  "
                                  f"{j.command[:54]}", id=str(i)) for i, j in enumerate(self.jobs)], id="jobs")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        job = self.jobs[int(event.option.id)]
        d = ScreenDef(kind="dialog", id="jobs", title=job.title, command={self.app.host_name: job.argv},
                      progress="backup" if job.progress else "")
        self.app.push_screen(CommandStatusScreen(d, job.argv, progress=job.progress, job=job))
