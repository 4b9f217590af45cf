"""Only what the terminal can show: the Linux console draws the IBM PC's glyph set (CP437),
which has whole and half blocks but none of the eighth blocks Textual's scroll bars end in."""

from __future__ import annotations

from textual.scrollbar import ScrollBar, ScrollBarRender


class WholeCellScrollBarRender(ScrollBarRender):
    """A scroll bar drawn in whole cells: the thumb is coloured blanks, rounded to a cell."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


def use_whole_cell_scrollbars() -> None:
    """For the rest of this process (one terminal, one app): Textual's documented way to draw
    scroll bars differently (``ScrollBar.renderer``)."""
    ScrollBar.renderer = WholeCellScrollBarRender
