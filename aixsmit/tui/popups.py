"""SMIT's pop-ups (aix-smit.md §1.9): messages, ARE YOU SURE?, lists (single and multi), find."""

from __future__ import annotations

from rich.segment import Segment
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.strip import Strip
from textual.widgets.option_list import Option

from ..fs.mounts import visible
from .keys import LIST_KEYS, MULTI_KEYS, POPUP_KEYS, footer_text

PRESS_RETURN = "Press Enter or Cancel to return to the\napplication."


def names(items) -> str:
    """Names (mount points, devices) for a message, space-separated, each through the one
    escaper: a newline, tab or ESC in one, or a space, shows as ``\\ooo`` and cannot forge a
    line, move the cursor or run two names together."""
    return " ".join(visible(n, spaces=True) for n in items)


def _picture(ch: str) -> str:
    """One cell for a character the one escaper would not show as it is: a C0 control's own
    picture (U+2400-U+241F: ESC is U+241B), DEL's (U+2421), U+FFFD for any other."""
    if visible(ch, backslash=False) == ch:
        return ch
    n = ord(ch)
    return chr(0x2400 + n) if n < 0x20 else "\u2421" if n == 0x7F else "\ufffd"


class FieldInput(Input):
    """An entry field that never sends what its value holds raw to the terminal: a value can
    come from a name (an F4 list, a mount point with a newline, a tab or ESC in it). The value
    is kept as it is (the command gets the real name); what is drawn shows each character the
    one escaper (``visible``) would escape as one picture character, so the cursor still moves
    one cell a character."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if all(seg.text.isascii() and seg.text.isprintable() for seg in strip):
            return strip
        return Strip([Segment("".join(map(_picture, seg.text)), seg.style, seg.control) for seg in strip],
                     strip.cell_length)


class Popup(ModalScreen):
    """A box over the current screen. Enter answers True (or the chosen value), F3 cancels."""

    BINDINGS = [
        Binding("f3", "cancel", "Cancel", priority=True),
        Binding("ctrl+g", "cancel", "Cancel", priority=True),
        Binding("f10", "cancel", "Exit", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("f8", "image", "Image", priority=True),
    ]
    KEYS = POPUP_KEYS

    def __init__(self, title: str, message: str = "", help_text: str = ""):
        super().__init__()
        self.popup_title = title
        self.message = message
        self.help_text = help_text

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static(self.popup_title, classes="title")
            yield from self.body()
            yield Static(footer_text(self.KEYS, self.app.esc_labels, 64), id="popup-footer")

    def body(self) -> ComposeResult:
        yield Static(self.message, id="message", markup=False)

    def on_mount(self) -> None:
        if self.app.ascii_only:
            self.add_class("-ascii")

    def dismiss(self, result=None):
        # Enter can reach both a list's own selection and the pop-up's key handler: answer once.
        if getattr(self, "_answered", False):
            return None
        self._answered = True
        return super().dismiss(result)

    def on_key(self, event) -> None:
        if event.key == "enter":
            event.stop()
            self.action_do()

    def action_do(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_help(self) -> None:
        text = self.help_text or "Press Enter to go on, or F3 (Esc+3) to cancel."
        self.app.push_screen(Popup("CONTEXTUAL HELP", text + "\n\n" + PRESS_RETURN))

    def action_image(self) -> None:
        self.app.action_image()


class MessagePopup(Popup):
    pass


class ListPopup(Popup):
    """F4: single select (Enter picks), or multi select (F7 marks with '>', Enter commits)."""

    BINDINGS = Popup.BINDINGS + [
        Binding("f7", "toggle", "Select", priority=True),
        Binding("slash", "find", "Find"),
        Binding("n", "find_next", "Find Next"),
    ]

    BUILDING = "Building the list ..."

    def __init__(self, title: str, items: list[tuple[str, str]] | None, multi: bool = False,
                 selected: list[str] | None = None, help_text: str = ""):
        """``items`` None: the list is being built elsewhere; :meth:`fill` gives it."""
        super().__init__(title, help_text=help_text)
        self.items = items or []
        self.building = items is None
        self.multi = multi
        self.selected = set(selected or [])
        self.pattern = ""
        self.KEYS = MULTI_KEYS if multi else LIST_KEYS

    def _prompt(self, i: int) -> str:
        value, text = self.items[i]
        return ("> " if value in self.selected else "  ") + visible(text, backslash=False)

    def _instructions(self) -> str:
        if self.building:
            return self.BUILDING
        if self.multi:
            return ("Move cursor to desired item and press F7.\n    ONE OR MORE items can be selected.\n"
                    "Press Enter AFTER making all selections.")
        return "Move cursor to desired item and press Enter."

    def _options(self) -> list[Option]:
        if self.multi:
            return [Option(self._prompt(i), id=str(i)) for i in range(len(self.items))]
        return [Option(visible(text, backslash=False), id=str(i)) for i, (_, text) in enumerate(self.items)]

    def body(self) -> ComposeResult:
        yield Static(self._instructions(), id="message")
        # Rows are text, not markup: a "[" in a name is a bracket. The services made the names
        # in them visible already; a second pass (backslashes kept) catches what one missed.
        yield OptionList(*self._options(), id="choices", markup=False)

    def fill(self, items: list[tuple[str, str]]) -> None:
        """The list, built: shown in place of "Building the list"."""
        if getattr(self, "_answered", False):
            return  # cancelled meanwhile
        self.items, self.building = items, False
        self.query_one("#message", Static).update(self._instructions())
        ol = self.query_one(OptionList)
        ol.clear_options()
        ol.add_options(self._options())
        if items:
            ol.highlighted = 0

    def on_mount(self) -> None:
        self.query_one("#choices").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.multi:
            self.action_do()
        else:
            self.dismiss(self.items[int(event.option.id)][0])

    def action_do(self) -> None:
        if self.building:
            return
        if self.multi:
            chosen = [v for v, _ in self.items if v in self.selected]
            self.dismiss(chosen)
        else:
            ol = self.query_one(OptionList)
            if ol.highlighted is not None:
                self.dismiss(self.items[ol.highlighted][0])

    def on_key(self, event) -> None:
        if event.key == "enter":
            event.stop()
            self.action_do()

    def action_toggle(self) -> None:
        if self.multi:
            ol = self.query_one(OptionList)
            i = ol.highlighted
            if i is not None:
                value = self.items[i][0]
                self.selected.symmetric_difference_update({value})
                ol.replace_option_prompt_at_index(i, self._prompt(i))

    def action_find(self) -> None:
        def got(pattern):
            if pattern:
                self.pattern = pattern
                self._find(0)

        self.app.push_screen(PromptPopup("Enter Search Pattern."), got)

    def action_find_next(self) -> None:
        widget = self.query_one("#choices")
        start = (widget.highlighted or 0) + 1
        if self.pattern:
            self._find(start)

    def _find(self, start: int) -> None:
        widget = self.query_one("#choices")
        needle = self.pattern.lower()
        n = len(self.items)
        for k in range(n):
            i = (start + k) % n
            if needle in self.items[i][1].lower():
                widget.highlighted = i
                return
        self.app.push_screen(MessagePopup("INFORMATION MESSAGE", "Pattern not found.\n\n" + PRESS_RETURN))


class PromptPopup(Popup):
    """One line of input (the / search pattern)."""

    def __init__(self, title: str, value: str = ""):
        super().__init__(title)
        self.value = value

    def body(self) -> ComposeResult:
        inp = FieldInput(self.value, id="prompt")
        inp.cursor_blink = False
        yield inp

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_do(self) -> None:
        self.dismiss(self.query_one(Input).value)
