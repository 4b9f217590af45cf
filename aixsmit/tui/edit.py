"""F7 in a dialog: a field's value in a larger window (aix-smit.md §1.6).

Its own module: Textual's text area is imported only when F7 is first pressed, not at start.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from .popups import Popup


class ValueArea(TextArea):
    """A field's value in a larger window: wrapped over several lines, and Enter commits it
    instead of breaking it (a value is one line)."""

    # A priority binding: checked before the text area's own handling of the key (a new line).
    BINDINGS = [Binding("enter", "commit", "Commit", show=False, priority=True)]

    class Commit(Message):
        pass

    def action_commit(self) -> None:
        self.post_message(self.Commit())


class EditPopup(Popup):
    """F7 in a dialog: edit the field's value in a larger window (aix-smit.md §1.6)."""

    def __init__(self, title: str, value: str = "", help_text: str = ""):
        super().__init__(title, help_text=help_text)
        self.value = value

    def body(self) -> ComposeResult:
        area = ValueArea(self.value, soft_wrap=True, show_line_numbers=False, tab_behavior="focus", id="edit")
        area.cursor_blink = False
        yield area

    def on_mount(self) -> None:
        super().on_mount()
        area = self.query_one(ValueArea)
        area.focus()
        area.move_cursor(area.document.end)

    def on_value_area_commit(self, event: ValueArea.Commit) -> None:
        event.stop()
        self.action_do()

    def action_do(self) -> None:
        # Line breaks that came in by pasting are spaces in a one-line value.
        self.dismiss(" ".join(self.query_one(ValueArea).text.splitlines()))
