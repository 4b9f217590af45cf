"""COMMAND STATUS's output pane: the newest lines as they come, and the whole output on demand.

Lines are not wrapped (a table stays a table); a line that goes on past the pane's right edge
ends in a continuation mark, and one scrolled from its start begins with one; Left/Right scroll
(the footer says so). The pane holds at most ``max_lines`` lines; Home, End, PgUp at its top
and PgDn at its bottom read other windows of the whole output from the job's log
(:mod:`aixsmit.jobs.outputlog`), in a worker thread. While the operator reads an older window
the pane stops following; End follows again.
"""

from __future__ import annotations


from rich.cells import cell_len
from rich.segment import Segment
from textual.binding import Binding
from textual.strip import Strip
from textual.widgets import Log


class OutputLog(Log):
    BINDINGS = [
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
        Binding("pageup", "page_back", show=False),
        Binding("pagedown", "page_on", show=False),
    ]

    def __init__(self, max_lines: int, **kw):
        super().__init__(max_lines=max_lines, **kw)
        self.window: list[int] | None = None  # the line numbers shown, while not following
        self.first_line = 0  # the output's line number of the pane's first line, while following
        self.loading = False

    # --- continuation marks ------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        i = scroll_y + y
        width = self.scrollable_content_region.width  # (the scroll bars take some of size.width)
        lines = self.lines
        if i >= len(lines) or width < 3:
            return strip
        n = cell_len(lines[i])
        left, right = ("<", ">") if self.app.ascii_only else ("\u00ab", "\u00bb")  # CP437 174, 175
        if n > scroll_x + width:
            segs = list(strip.crop(0, width - 1))
            style = segs[-1].style if segs else None
            strip = Strip(segs + [Segment(right, style)], width)
        if scroll_x > 0 and n > 0:
            segs = list(strip.crop(1, width))
            style = segs[0].style if segs else None
            strip = Strip([Segment(left, style)] + segs, width)
        return strip

    # --- the whole output ------------------------------------------------------------------
    @property
    def top_line(self) -> int:
        """The output's line number of the pane's first line."""
        if self.window is not None:
            return self.window[0] if self.window else 0
        return self.first_line

    def show_window(self, texts: list[str], numbers: list[int], at: int) -> None:
        """Show lines ``texts`` (output line numbers ``numbers``) and put line ``at`` (an output
        line number) at the top of the view; the pane stops following."""
        from ..jobs.outputlog import pane_index

        self.window = numbers
        self.auto_scroll = False
        self.clear()
        self.write_lines([t or " " for t in texts])
        y = pane_index(numbers, at)
        self.call_after_refresh(lambda: self.scroll_to(y=y, animate=False))

    def follow(self, texts: list[str], first_line: int) -> None:
        """Follow again: the newest lines, ``texts``, from output line ``first_line`` on."""
        self.window = None
        self.first_line = first_line
        self.clear()
        self.write_lines([t or " " for t in texts])
        self.auto_scroll = True
        self.call_after_refresh(lambda: self.scroll_end(animate=False))

    def holds_whole(self) -> bool:
        """The pane holds the whole output: no need to read the log."""
        return self.window is None and self.first_line == 0 and not self.screen.lines_skipped

    def action_first(self) -> None:
        if self.holds_whole():
            self.auto_scroll = False
            self.scroll_home(animate=False)
        else:
            self.screen.load_window(0, 0)

    def action_last(self) -> None:
        if self.window is None:
            self.auto_scroll = True
            self.scroll_end(animate=False)
        else:
            self.screen.load_tail()

    def action_page_back(self) -> None:
        if self.scroll_y > 0 or self.holds_whole() or self.top_line == 0:
            self.auto_scroll = False
            self.scroll_page_up(animate=False)
            return
        top = self.top_line
        self.screen.load_window(max(0, top - self.max_lines // 2), max(0, top - self.size.height))

    def action_page_on(self) -> None:
        if self.window is None or self.scroll_y < self.max_scroll_y:
            self.scroll_page_down(animate=False)
            return
        if not self.window:
            return
        below = self.window[-1] + 1
        self.screen.load_window(max(0, below - self.max_lines // 2), below)


