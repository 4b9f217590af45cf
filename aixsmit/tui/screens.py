"""SMIT's screens: menu, selector and dialog, COMMAND STATUS (aix-smit.md §1.3-§1.8)."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static

from ..errors import AixsmitError
from ..fs.mounts import visible
from ..smit import command as cmdbuild
from ..smit.model import Field, Screen as ScreenDef
from .keys import DIALOG_KEYS, MENU_KEYS, STATUS_DONE_KEYS, STATUS_RUNNING_KEYS, footer_text
from .popups import PRESS_RETURN, FieldInput, ListPopup, MessagePopup, PromptPopup


def _show(line: Static, text: str) -> None:
    """Set a one-line Static's text, only when it changed and without a new layout (its size
    does not change): the status line, the progress text and the output markers are set on
    every 50 ms tick of COMMAND STATUS, and Static.update() would lay the whole screen out again
    each time."""
    if getattr(line, "_shown", None) != text:
        line._shown = text
        line.update(text, layout=False)


def warm_up() -> None:
    """Import what COMMAND STATUS needs (7 ms of imports), while the operator reads the first
    screen: the first command's screen is then built sooner, and takes less of the CPU its
    command is starting on."""
    import textual.scrollbar  # noqa: F401
    from . import output  # noqa: F401  (the pane, with textual.widgets.Log)

    from ..jobs import progress, runner  # noqa: F401


# Not priority bindings: a key goes to the focused field first, in the order typed, so F6 or
# Enter after fast typing (or a paste) sees every character. Fields bind no function key.
FKEYS = [
    Binding("f1", "help", "Help"),
    Binding("f2", "refresh", "Refresh"),
    Binding("ctrl+l", "refresh", "Refresh", show=False),
    Binding("f3", "cancel", "Cancel"),
    Binding("ctrl+g", "cancel", "Cancel", show=False),
    Binding("f8", "image", "Image"),
    Binding("f9", "shell", "Shell"),
    Binding("f10", "exit", "Exit"),
]


class SmitScreen(Screen):
    """Title, instructions, body, and the function-key labels at the bottom."""

    BINDINGS = FKEYS
    KEYS = MENU_KEYS
    INSTRUCTIONS = ""

    def __init__(self, definition: ScreenDef | None = None, title: str = ""):
        super().__init__()
        self.definition = definition
        self.screen_title = title or (definition.title if definition else "")

    @property
    def fastpath(self) -> str:
        return self.definition.id if self.definition else ""

    def compose(self) -> ComposeResult:
        yield Static(self.screen_title, classes="title", id="title")
        if self.INSTRUCTIONS:
            yield Static(self.INSTRUCTIONS, classes="instructions")
        yield from self.body()
        yield Static(self.footer_keys(), classes="footer", id="footer")

    def body(self) -> ComposeResult:
        yield from ()

    def on_resize(self, event) -> None:
        self.app._check_size()

    def on_mount(self) -> None:
        if self.app.ascii_only:
            self.add_class("-ascii")

    def on_screen_resume(self) -> None:
        self.app.call_after_refresh(self.app._check_size)

    def footer_keys(self) -> str:
        return footer_text(self.KEYS, self.app.esc_labels, 80)

    def set_keys(self, keys, layout: bool = True) -> None:
        """Show other keys; ``layout=False`` when the footer keeps its height."""
        self.KEYS = keys
        self.query_one("#footer", Static).update(self.footer_keys(), layout=layout)

    def help_text(self) -> str:
        return (self.definition.help if self.definition else "") or "No help is available for this screen."

    def action_help(self) -> None:
        self.app.push_screen(MessagePopup("CONTEXTUAL HELP", self.help_text() + "\n\n" + PRESS_RETURN))

    def action_refresh(self) -> None:
        self.app.refresh(layout=True)

    def action_cancel(self) -> None:
        self.app.go_back()

    def action_image(self) -> None:
        self.app.action_image()

    def action_shell(self) -> None:
        self.app.action_shell()

    def action_exit(self) -> None:
        self.app.action_exit_smit()


class MenuList(VerticalScroll, can_focus=True):
    """A menu: one row per item, the highlighted one in reverse video.

    Each row is its own widget, so moving the cursor repaints two lines, not the whole list:
    what a slow serial line or SSH link has to carry for one key press."""

    BINDINGS = [
        Binding("down,ctrl+n", "move(1)", show=False),
        Binding("up,ctrl+p", "move(-1)", show=False),
        Binding("pagedown,ctrl+v", "move(10)", show=False),
        Binding("pageup", "move(-10)", show=False),
        Binding("home", "move(-9999)", show=False),
        Binding("end", "move(9999)", show=False),
        Binding("enter", "choose", show=False),
    ]

    class Chosen(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, labels: list[str], **kw):
        super().__init__(**kw)
        self.labels = labels
        self.highlighted = 0 if labels else None

    def compose(self) -> ComposeResult:
        for i, label in enumerate(self.labels):
            # Padded, so the reverse-video bar spans the row as SMIT's does (the row clips it).
            yield Static(("  " + label).ljust(256), classes="menu-item" + (" -hl" if i == 0 else ""), markup=False)

    def action_move(self, step: int) -> None:
        if self.highlighted is None:
            return
        rows = list(self.query(".menu-item"))
        new = max(0, min(len(rows) - 1, self.highlighted + step))
        if new != self.highlighted:
            rows[self.highlighted].remove_class("-hl")
            rows[new].add_class("-hl")
            self.highlighted = new
            self.scroll_to_widget(rows[new], animate=False)

    def action_choose(self) -> None:
        if self.highlighted is not None:
            self.post_message(self.Chosen(self.highlighted))


class MenuScreen(SmitScreen):
    INSTRUCTIONS = "Move cursor to desired item and press Enter."

    def body(self) -> ComposeResult:
        yield MenuList([it.label for it in self.definition.items], id="menu")

    def on_mount(self) -> None:
        self.query_one(MenuList).focus()

    def on_menu_list_chosen(self, event: MenuList.Chosen) -> None:
        item = self.definition.items[event.index]
        self.app.open(item.next)

    def help_text(self) -> str:
        ol = self.query_one(MenuList)
        if ol.highlighted is not None:
            item = self.definition.items[ol.highlighted]
            if item.help:
                return f"{item.label}\n\n{item.help}"
        return super().help_text()


class RingValue(Static, can_focus=True):
    """A ring field: its value without brackets; Tab / Shift-Tab (or arrows) cycle the choices."""

    BINDINGS = [
        Binding("tab", "cycle(1)", "Next value", show=False),
        Binding("shift+tab", "cycle(-1)", "Previous value", show=False),
        Binding("right", "cycle(1)", show=False),
        Binding("left", "cycle(-1)", show=False),
        Binding("enter", "do", show=False),
    ]

    def __init__(self, field: Field, value: str):
        super().__init__(value, markup=False)
        self.field = field
        self.value = value

    def set_value(self, value: str) -> None:
        self.value = value
        self.update(value)
        self.set_class(value != self.field.default, "-changed")

    def action_cycle(self, step: int) -> None:
        choices = list(self.field.choices)
        i = choices.index(self.value) if self.value in choices else 0
        self.set_value(choices[(i + step) % len(choices)])

    def action_do(self) -> None:
        self.screen.action_do()


class FieldRow(Widget):
    def __init__(self, field: Field, value: str):
        super().__init__()
        self.field = field
        self.initial = value

    def compose(self) -> ComposeResult:
        f = self.field
        label = ("* " if f.required else "  ") + f.label
        yield Static(label[:51], classes="label", markup=False)
        if f.is_ring:
            yield RingValue(f, self.initial)
        else:
            yield Static("[", classes="bracket")
            inp = FieldInput(self.initial, id=f"in-{f.name}", select_on_focus=False)
            inp.cursor_blink = False  # a blinking cursor costs ~2 KB/s on the wire
            yield inp
            yield Static("]", classes="bracket")
        yield Static(" " + f.marker, classes="marker", markup=False)

    def on_mount(self) -> None:
        self.refresh_changed()

    @property
    def value(self) -> str:
        if self.field.is_ring:
            return self.query_one(RingValue).value
        return self.query_one(Input).value

    def set_value(self, value: str) -> None:
        if self.field.is_ring:
            self.query_one(RingValue).set_value(value)
        else:
            self.query_one(Input).value = value
        self.refresh_changed()

    def refresh_changed(self) -> None:
        if not self.field.is_ring:
            self.query_one(Input).set_class(self.value != self.field.default, "-changed")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_changed()

    def value_widget(self) -> Widget:
        return self.query_one(RingValue) if self.field.is_ring else self.query_one(Input)

    def focus_value(self) -> None:
        self.value_widget().focus()


class DialogScreen(SmitScreen):
    """A dialog (fields → command), or a selector (one value → the next screen)."""

    BINDINGS = FKEYS + [
        Binding("f4", "list", "List"),
        Binding("f5", "reset", "Reset"),
        Binding("f6", "show_command", "Command"),
        Binding("f7", "edit", "Edit"),
        Binding("down", "move(1)", "Next field", show=False, priority=True),
        Binding("up", "move(-1)", "Previous field", show=False, priority=True),
        Binding("pagedown", "move(10)", show=False, priority=True),
        Binding("pageup", "move(-10)", show=False, priority=True),
        Binding("enter", "do", "Do", show=False),  # when no field has taken it (none focused)
    ]
    KEYS = DIALOG_KEYS

    def __init__(self, definition: ScreenDef, preset: dict[str, str] | None = None):
        super().__init__(definition)
        self.preset = dict(preset or {})
        self.INSTRUCTIONS = ("Type or select a value for the entry field.\nPress Enter AFTER making all desired changes."
                             if definition.kind == "selector" else
                             "Type or select values in entry fields.\nPress Enter AFTER making all desired changes.")

    def initial_value(self, f: Field) -> str:
        if f.name in self.preset:
            return self.preset[f.name]
        if f.value:
            items = self.app.list_items(f.value)
            if items:
                return items[0][0]
        return f.default

    def body(self) -> ComposeResult:
        with VerticalScroll(id="body"):
            yield Static("[Entry Fields]", classes="entry-header", markup=False)
            if self.definition.warning:
                yield Static(self.definition.warning, classes="warning", markup=False)
            for f in self.definition.fields:
                yield FieldRow(f, self.initial_value(f))
                if f.note:
                    yield Static(f.note, classes="note", markup=False)

    def on_mount(self) -> None:
        # The body scrolls with the cursor; it is never itself a stop for the cursor.
        self.query_one("#body").can_focus = False
        rows = list(self.query(FieldRow))
        if rows:
            rows[0].focus_value()

    def action_move(self, step: int) -> None:
        """Up/Down (and PgUp/PgDn by ten) move the cursor from field to field and stop at the
        first and the last, as in smitty: the cursor is always on a field, so Enter always
        has a dialog to run."""
        rows = self.rows()
        if not rows:
            return
        row = self.focused_row()
        i = rows.index(row) if row in rows else 0
        target = rows[max(0, min(len(rows) - 1, i + step))]
        # At once, not at the next turn of the loop (as Widget.focus does): a second Down typed
        # fast must start from the field the first one reached.
        self.set_focus(target.value_widget())
        target.scroll_visible(animate=False)

    # --- values ------------------------------------------------------------------------
    def rows(self) -> list[FieldRow]:
        return list(self.query(FieldRow))

    def values(self) -> dict[str, str]:
        return {r.field.name: r.value for r in self.rows()}

    def changed(self) -> bool:
        return any(r.value != (self.preset.get(r.field.name, r.field.default)) for r in self.rows())

    def focused_row(self) -> FieldRow | None:
        w = self.focused
        while w is not None and not isinstance(w, FieldRow):
            w = w.parent
        return w if isinstance(w, FieldRow) else None

    def help_text(self) -> str:
        row = self.focused_row()
        if row and row.field.help:
            return f"{row.field.label}\n\n{row.field.help}"
        return super().help_text()

    # --- keys --------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input.parent, FieldRow):
            event.stop()
            self.action_do()

    def action_list(self) -> None:
        row = self.focused_row()
        if row is None:
            return
        f = row.field
        multi = f.type == "multi"

        def chosen(value) -> None:
            if value is None or value == "":
                return
            row.set_value(" ".join(value) if isinstance(value, list) else value)
            row.focus_value()

        current = row.value.split() if multi else []
        if f.list:
            self.app.open_list(f.label, f.list, chosen, multi=multi, selected=current, help_text=f.help)
            return
        if f.is_ring:
            items = [(c, c) for c in f.choices]
        else:
            self.app.push_screen(MessagePopup("ERROR MESSAGE", "There is no list for this entry field.\n\n" + PRESS_RETURN))
            return
        if not items:
            self.app.push_screen(MessagePopup("ERROR MESSAGE", "1800-051 There are no items of this type.\n\n" + PRESS_RETURN))
            return
        self.app.push_screen(ListPopup(f.label, items, multi=multi, selected=current, help_text=f.help), chosen)

    def action_reset(self) -> None:
        row = self.focused_row()
        if row is not None:
            row.set_value(self.preset.get(row.field.name, row.field.default))

    def action_edit(self) -> None:
        row = self.focused_row()
        if row is None or row.field.is_ring:
            return

        def done(value):
            if value is not None:
                row.set_value(value)
                row.focus_value()

        from .edit import EditPopup

        self.app.push_screen(EditPopup(row.field.label, row.value, help_text=row.field.help), done)

    def build(self) -> list[str] | None:
        try:
            return cmdbuild.build(self.definition, self.values(), self.app.host_name, self.app.root)
        except AixsmitError as exc:
            self.app.push_screen(MessagePopup("ERROR MESSAGE", f"{exc}\n\n{PRESS_RETURN}"))
            return None

    def action_show_command(self) -> None:
        if self.definition.kind == "selector":
            return
        argv = self.build()
        if argv is not None:
            self.app.push_screen(MessagePopup("SHOW COMMAND STRING", PRESS_RETURN + "\n\n" + visible(cmdbuild.display(argv))))

    def action_cancel(self) -> None:
        if self.changed():
            def answer(ok):
                if ok:
                    self.app.go_back()

            self.app.push_screen(MessagePopup(
                "CANCEL", "WARNING: Cancellation will cause a loss of all\nthe values you have changed.\n"
                          "    Press Enter to continue cancellation.\n    Press Cancel to return to the application."),
                answer)
        else:
            self.app.go_back()

    def action_do(self) -> None:
        d = self.definition
        if d.kind == "selector":
            f = d.fields[0]
            value = self.values()[f.name].strip()
            if f.required and not value:
                self.app.push_screen(MessagePopup(
                    "ERROR MESSAGE", f'1820-033 A value must be specified in the\nentry field for:\n"{f.label}".\n\n{PRESS_RETURN}'))
                return
            self.app.open(d.next, preset={f.name: value})
            return
        argv = self.build()
        if argv is None:
            return
        if d.ask:
            def answer(ok):
                if ok:
                    self.app.run_command(d, argv)

            self.app.push_screen(MessagePopup(
                "ARE YOU SURE?", "Continuing may delete information you may want\nto keep.  This is your last chance to stop\n"
                                 "before continuing.\n    Press Enter to continue.\n    Press Cancel to return to the application."),
                answer)
        else:
            self.app.run_command(d, argv)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _size(n: int, unit: int) -> str:
    return f"{n / unit:,.1f}" if unit >= 1 << 30 else f"{n // unit:,}"


BAR_WIDTH = 16


def _short_clock(seconds: float) -> str:
    s = int(seconds)
    return _clock(s) if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(p, elapsed: float, glyphs: tuple[str, str], ended: bool = False) -> str:
    """COMMAND STATUS's progress row, at most 80 columns: a bar drawn with ``glyphs`` (done,
    to do), the percentage, files, bytes when the command says them, the time so far and,
    while it runs, the time left (ETA: the rate so far, by bytes when known, else by files).

    ``p`` is a :class:`aixsmit.jobs.progress.BackupProgress`."""
    fraction = p.fraction
    done = int(BAR_WIDTH * fraction)
    out = f"[{glyphs[0] * done}{glyphs[1] * (BAR_WIDTH - done)}] {int(100 * fraction):3d}%"
    if p.files_total:
        out += f"  {p.files_done:,}/{p.files_total:,} files"
    if p.bytes_total:
        unit = 1 << 30 if p.bytes_total >= 10 << 30 else 1 << 20
        out += f"  {_size(p.bytes_done, unit)}/{_size(p.bytes_total, unit)} {'GB' if unit == 1 << 30 else 'MB'}"
    eta = ""
    if not ended and 0.0 < fraction < 1.0 and elapsed >= 2.0:
        eta = f"  ETA {_short_clock(elapsed * (1.0 - fraction) / fraction)}"
    # Within 80 columns: the time so far gives way to the time left.
    spent = f"  {_short_clock(elapsed)}"
    return out + (spent if len(out + spent + eta) < 80 else "") + eta


class CommandStatusScreen(SmitScreen):
    """COMMAND STATUS: the command's state, a progress bar when it reports one, its output."""

    BINDINGS = FKEYS + [
        Binding("f6", "show_command", "Command"),
        Binding("slash", "find", "Find"),
        Binding("n", "find_next", "Find Next"),
        Binding("enter", "go_on", "Continue", show=False),
    ]
    KEYS = STATUS_RUNNING_KEYS
    MAX_LINES = 5000  # on screen; the whole output is in smit.log
    MAX_BATCH = 1000  # lines written to the pane per 50 ms tick

    def __init__(self, definition: ScreenDef, argv: list[str], progress: bool, job=None, next_label: str = "",
                 on_next=None):
        """``next_label``: once the command has ended, Enter (so labelled) leaves this screen
        and calls ``on_next()`` (the guided backup goes on to its summary)."""
        super().__init__(definition, "COMMAND STATUS")
        self.next_label = next_label
        self.on_next = on_next
        self.argv = argv
        self.with_progress = progress
        self.status = "running"
        self.stdout_seen = False
        self.stderr_seen = False
        self.job = job  # a detached job to follow; None starts one, at once
        self._started_here = job is None
        self._start_error: OSError | None = None
        if job is None:
            # Started before the screen is even drawn: the command does not wait for the screen.
            from ..jobs import detached

            try:
                self.job = detached.start(definition.title, cmdbuild.display(argv), cmdbuild.runnable(argv), progress)
            except OSError as exc:
                self._start_error = exc
        self._stop_following = False
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self._lock = threading.Lock()
        self._pending: list[str] = []  # the newest lines, at most MAX_BATCH, for the next tick
        self._unseen = 0  # lines passed over since the last tick (too many to show; in smit.log)
        self._progress = None
        self._final = None
        self._consumed = 0  # bytes of the job's log read, up to the end of the last whole line
        self._file_lines = 0  # lines of the job's log read
        self._tail_loading = False  # the pane is being given the log's newest lines again
        self._index = None  # the job's log's line index, made when first needed
        self._reading = False  # a read of the job's log is under way (_in_thread)
        self.lines_skipped = 0  # lines never written to the pane (too many at once)
        self.lines_total = 0
        self.bytes_total = 0
        self.pattern = ""
        self.found_at = -1

    def footer_keys(self) -> str:
        # While running, the footer keeps the rows the finished screen's keys take (blank), so
        # the end changes text only: the output pane does not shrink and move under the eye,
        # and the end is drawn in one frame, without a new layout.
        text = super().footer_keys()
        done = footer_text(self.done_keys(), self.app.esc_labels, 80).count("\n")
        return text + "\n " * max(0, done - text.count("\n"))

    def body(self) -> ComposeResult:
        from .output import OutputLog

        yield Static(self.status_text(), classes="status-line", id="status", markup=False)
        yield Static("Before command completion, additional instructions may appear below.", classes="before",
                     markup=False)
        if self.with_progress:
            yield Static("", id="progress-text", markup=False)
        # SMIT's markers when the output is longer than the pane (aix-smit.md §1.2, §1.10).
        yield Static("", id="output-top", classes="output-marker", markup=False)
        yield OutputLog(max_lines=self.MAX_LINES, id="output")
        yield Static("", id="output-bottom", classes="output-marker", markup=False)

    def _markers(self) -> None:
        """``[TOP]`` or ``[MORE...n]`` above the output, ``[MORE...n]`` or ``[BOTTOM]`` below it:
        n lines out of view that way. Shown only when the output overflows the pane; their two
        rows are kept, blank, while it fits, so the pane never changes size under the output
        (it did when they appeared: the last line went out of view until the next frame)."""
        from textual.widgets import Log

        try:
            log = self.query_one(Log)
            top, bottom = self.query_one("#output-top", Static), self.query_one("#output-bottom", Static)
        except Exception:
            return  # the screen is closing
        # Counted in the whole output, not only the lines the pane holds.
        after = 0
        if log.window is not None:
            after = max(0, self._file_lines - 1 - log.window[-1]) if log.window else 0
        if log.max_scroll_y > 0 or log.top_line > 0 or after > 0:
            y = log.top_line + round(log.scroll_y)
            below = max(0, round(log.max_scroll_y) - round(log.scroll_y)) + after
            _show(top, "[TOP]" if y <= 0 else f"[MORE...{y}]")
            _show(bottom, "[BOTTOM]" if below <= 0 else f"[MORE...{below}]")
        else:
            _show(top, "")
            _show(bottom, "")

    def status_text(self) -> str:
        yn = lambda b: "yes" if b else "no"  # noqa: E731
        line = f"Command: {self.status:<14.14}stdout: {yn(self.stdout_seen):<14.14}stderr: {yn(self.stderr_seen):<14.14}"
        return line + (f"[line {self.found_at + 1}]" if self.found_at >= 0 else "")

    def on_mount(self) -> None:
        import gc

        # A long output makes many short-lived objects; a full collection walking every
        # long-lived object of the app would pause the screen. Keep those out of its way
        # (without a full collection first: that alone would pause it for milliseconds).
        gc.freeze()
        self.set_interval(0.05, self.flush)
        self.watch(self.query_one("#output"), "scroll_y", lambda _: self._markers(), init=False)
        self.app.smit_log.output_start()
        threading.Thread(target=self._follow, name="aixsmit-follow", daemon=True).start()

    # Runs in a thread: starts the command detached from this terminal (or follows one started
    # earlier), reads its output log as it grows and leaves the lines for the UI timer.
    def _follow(self) -> None:
        from ..jobs import detached
        from ..jobs.progress import BackupProgress
        from ..jobs.runner import Finished, decode_lines

        try:
            if self._start_error is not None:
                raise self._start_error
            if not self._started_here:
                self.started = time.monotonic() - max(0.0, time.time() - self.job.start)
            parser = BackupProgress() if self.with_progress else None
            partial = b""
            log = open(self.job.log, "rb")
        except OSError as exc:
            with self._lock:
                self._pending.append(f"{self.argv[0]}: {exc.strerror or exc}")
                self.stderr_seen = True
                self._final = Finished("FAILED", 127, 0.0)
            return
        info, info_read = self.job, 0.0
        last_data = time.monotonic()
        # The supervisor's exit wakes the waits below at once (it has written the job's end by
        # then), instead of the end being seen at the next poll.
        supervisor_gone, watched = -1, 0
        with log:
            while not self._stop_following:
                data = log.read(1 << 22)
                # The job's state at least 4 times a second, and between bursts of output while
                # no pidfd says when the supervisor has gone: read after the log, so an ended
                # job's output is all in the log by then.
                now = time.monotonic()
                if now - info_read > 0.25 or (not data and supervisor_gone < 0):
                    info, info_read = detached.refresh(self.job), now
                    if info.status != detached.RUNNING:
                        data += log.read()
                if data:
                    data = partial + data
                    cut = data.rfind(b"\n")
                    partial, data = (data[cut + 1:], data[:cut]) if cut >= 0 else (data, b"")
                if data:
                    count = data.count(b"\n") + 1
                    shown = data
                    if parser is None and count > self.MAX_BATCH:
                        # Only the newest lines can reach the pane: decode just those.
                        shown = b"\n".join(data.rsplit(b"\n", self.MAX_BATCH)[1:])
                    lines = list(decode_lines(shown))
                    changed = False
                    if parser is not None:
                        for line in lines:
                            if "of" in line or "0512-" in line or "Backing" in line:
                                changed = parser.feed(line) or changed
                        # The bar shows the counter: the pane and smit.log keep its last line
                        # (100%), not one a second.
                        lines = [line for line in lines if not parser.is_tick(line)]
                        count = len(lines)
                        self.app.smit_log.output(lines)
                    elif b"\r" in data or b"\x1b" in data:
                        self.app.smit_log.output(lines if shown is data else list(decode_lines(data)))
                    else:
                        self.app.smit_log.output_bytes(data + b"\n")
                    with self._lock:
                        self._pending.extend(lines)
                        self._unseen += count - len(lines)
                        if len(self._pending) > self.MAX_BATCH:
                            self._unseen += len(self._pending) - self.MAX_BATCH
                            del self._pending[:-self.MAX_BATCH]
                        self.bytes_total += len(data) + 1
                        self._file_lines += data.count(b"\n") + 1
                        self._consumed = log.tell() - len(partial)
                        if changed:
                            self._progress = replace(parser)
                with self._lock:
                    self.stdout_seen, self.stderr_seen = info.stdout, info.stderr
                # Done when the job has ended and its log is read to the end.
                if info.status != detached.RUNNING and not data and log.tell() >= os.path.getsize(self.job.log):
                    if partial:  # a last line without its newline
                        self.app.smit_log.output_bytes(partial + b"\n")
                        with self._lock:
                            self._pending.extend(decode_lines(partial))
                    status = info.status if info.status in ("OK", "WARN", "FAILED") else "FAILED"
                    with self._lock:
                        self._final = Finished(status, info.rc if info.rc is not None else -1, info.end - info.start)
                    detached.mark_seen(info)
                    try:
                        self.app.call_from_thread(self.flush)  # show the end now, not at the next tick
                    except RuntimeError:
                        pass  # the app is closing
                    break
                if data:
                    last_data = now
                else:
                    # Quick to notice the end right after output; a quiet command is checked
                    # less often.
                    wait = 0.005 if now - last_data < 1.0 else 0.05
                    if info.supervisor and info.supervisor != watched:
                        watched = info.supervisor
                        try:
                            supervisor_gone = os.pidfd_open(watched)
                        except (AttributeError, OSError):
                            supervisor_gone = -1
                    if supervisor_gone >= 0:
                        if select.select([supervisor_gone], [], [], wait)[0]:
                            os.close(supervisor_gone)  # it has exited: refresh reads its end next
                            supervisor_gone = -1
                    else:
                        time.sleep(wait)
        if supervisor_gone >= 0:
            os.close(supervisor_gone)

    def flush(self) -> None:
        from textual.widgets import Log

        with self._lock:
            if self._tail_loading:  # these lines come after the tail being read: kept for it
                lines, skipped = [], 0
            else:
                lines, self._pending = self._pending, []
                skipped, self._unseen = self._unseen, 0
            progress, final = self._progress, self._final
        # The end first, then the lines: the status line and the keys are then drawn in the
        # same frame as the last lines, not one frame (16-33 ms) later.
        ended = final is not None and self.status == "running"
        if ended:
            self.finished_at = time.monotonic()
            self.status = {"OK": "OK", "WARN": "OK", "FAILED": "failed"}[final.status]
            if final.status == "WARN":
                self.status = "OK (warnings)"
            self.app.smit_log.output_end(self.bytes_total)
            if self.with_progress and final.status != "FAILED" and progress is not None:
                progress = self._progress = replace(progress, files_done=progress.files_total,
                                                    bytes_done=progress.bytes_total, percent=100.0)
            self.set_class(final.status == "FAILED", "-failed")
            self.set_class(final.status == "WARN", "-warn")
            self.set_keys(self.done_keys(), layout=False)  # the same rows: see footer_keys
        _show(self.query_one("#status", Static), self.status_text())
        if self.with_progress:
            text = self.query_one("#progress-text", Static)
            elapsed = (self.finished_at or time.monotonic()) - self.started
            if progress is not None and (progress.files_total or progress.bytes_total):
                _show(text, progress_line(progress, elapsed, self.app.glyphs, ended=self.finished_at is not None))
            elif final is None:
                _show(text, f" {_clock(elapsed)}")
        log = self.query_one(Log)
        if lines or skipped:
            self.lines_total += len(lines) + skipped
            self.lines_skipped += skipped
        if (lines or skipped) and log.window is None:
            # Writing a huge batch at once would stall the screen; the pane shows the newest lines
            # and says how many it skipped (Home and PgUp read them from the job's log).
            if skipped:
                lines = [f"[... {skipped} more lines: Home and PgUp show them ...]"] + lines
            # Log.write_lines drops empty strings (it splits each into lines): keep blank lines.
            log.write_lines([l or " " for l in lines])
            # The output's line number of the pane's first line (a mark of skipped lines aside).
            log.first_line = max(0, self.lines_total - len(log.lines))
            if len(log.lines) >= self.MAX_LINES:
                # Full, the pane drops as many old lines as it takes new ones and keeps its
                # size and scroll position; Textual's Log then repaints only part of itself,
                # and older lines stay on screen. Repaint it whole.
                log.refresh()
            self._markers()  # the pane keeps its size: its scroll range is known now
        if ended:
            # The end is drawn whole, in the frame Textual draws next: a screen that has drawn
            # nothing for a frame (1/TEXTUAL_FPS) draws it as soon as this handler returns. The
            # app hears of the end once that frame is drawn.
            self.refresh()
            self.call_after_refresh(self.app.command_finished, self, final)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def files_total(self) -> int | None:
        """The files a command with progress said it backs up (``Backing up N files``)."""
        return self._progress.files_total if self._progress is not None else None

    def on_unmount(self) -> None:
        self._stop_following = True

    def done_keys(self) -> list:
        return STATUS_DONE_KEYS + ([("Enter", self.next_label)] if self.next_label else [])

    def action_go_on(self) -> None:
        if self.running or not self.next_label:
            return
        self.app.pop_screen()
        if self.on_next is not None:
            self.on_next()

    def action_cancel(self) -> None:
        if self.running:
            # A command that mounts again what it unmounted (the guide's sysbackup) is asked to
            # stop (TERM) and given the time it takes: a KILL would leave file systems unmounted.
            mounts_again = self.definition is not None and self.definition.id == "walkthrough"

            def answer(ok):
                if ok and self.job is not None:
                    from ..jobs import detached

                    info = detached.refresh(self.job)
                    if mounts_again:
                        if info.pgid:
                            try:
                                os.killpg(info.pgid, signal.SIGTERM)
                            except ProcessLookupError:
                                pass
                        return
                    threading.Thread(target=detached.cancel, args=(info,), daemon=True).start()

            what = (". It stops after mounting again the user file systems it unmounted."
                    if mounts_again else " (its whole process group).")
            self.app.push_screen(MessagePopup(
                "CANCEL", f"The command is still running.\n    Press Enter to stop it{what}\n"
                          "    Press Cancel to let it run."), answer)
        else:
            self.app.go_back()

    def action_exit(self) -> None:
        if self.running:
            def answer(ok):
                if ok:
                    self.app.exit_smit()

            self.app.push_screen(MessagePopup(
                "EXIT", "The command is still running, and goes on without this screen:\n"
                        "aixsmit shows it again (Running and Recent Commands).\n"
                        "    Press Enter to exit.\n    Press Cancel to return to the application."), answer)
        else:
            super().action_exit()

    def action_show_command(self) -> None:
        self.app.push_screen(MessagePopup("SHOW COMMAND STRING", PRESS_RETURN + "\n\n" + visible(cmdbuild.display(self.argv))))

    def action_find(self) -> None:
        def got(pattern):
            if pattern:
                self.pattern = pattern
                self.found_at = -1
                self.action_find_next()

        self.app.push_screen(PromptPopup("Enter Search Pattern.", self.pattern), got)

    def action_find_next(self) -> None:
        from textual.widgets import Log

        if not self.pattern:
            return
        log = self.query_one(Log)
        if not log.holds_whole():
            self._find_in_log(self.pattern, self.found_at)
            return
        lines = log.lines
        n = len(lines)
        needle = self.pattern.lower()
        for k in range(1, n + 1):
            i = (self.found_at + k) % n if n else 0
            if needle in lines[i].lower():
                self.found_at = i
                log.auto_scroll = False
                log.scroll_to(y=max(0, i - 2), animate=False)
                _show(self.query_one("#status", Static), self.status_text())
                return
        self._not_found()

    def _not_found(self) -> None:
        self.app.push_screen(MessagePopup("INFORMATION MESSAGE", "Pattern not found.\n\n" + PRESS_RETURN))

    # --- the whole output, from the job's log (the pane keeps the newest MAX_LINES) ---------
    def _in_thread(self, work, done, upto: int | None = None) -> bool:
        """``work(index)`` in a worker thread (it reads the job's log), then ``done(result)`` on
        the screen's. One read at a time (``_reading``); a read that fails, whatever the error,
        is said in one line and the screen stays usable. False when a read is under way."""
        from textual.widgets import Log

        if self._reading or self.job is None:
            return False
        self._reading = True
        log = self.query_one(Log)
        log.loading = True  # the indicator only: _reading says whether a read is under way

        def run() -> None:
            from ..jobs.outputlog import LineIndex

            try:
                if self._index is None:
                    self._index = LineIndex(self.job.log)
                with self._lock:
                    end = self._consumed if upto is None else upto
                self._index.extend(end)
                result = work(self._index)
            except Exception as exc:  # said on the screen (finish), never a dead screen
                result = exc
            try:
                self.app.call_from_thread(finish, result)
            except RuntimeError:
                pass  # the app is closing

        def finish(result) -> None:
            self._reading = False
            log.loading = False
            if isinstance(result, Exception):
                why = (result.strerror if isinstance(result, OSError) else None) or str(result) \
                    or type(result).__name__
                why = " ".join(why.split())
                self.app.push_screen(MessagePopup(
                    "ERROR MESSAGE", f"{self.job.log}: cannot read the output: {why}\n\n" + PRESS_RETURN))
            else:
                done(result)
            self._markers()

        self.run_worker(run, name="aixsmit-output", group="output", thread=True, exit_on_error=False)
        return True

    def _keep(self):
        from ..jobs.progress import BackupProgress

        return (lambda line: not BackupProgress.is_tick(line)) if self.with_progress else None

    def load_window(self, start: int, at: int) -> None:
        """Show MAX_LINES lines of the whole output from line ``start``, line ``at`` on top."""
        from textual.widgets import Log
        from ..jobs.runner import decode_lines

        keep = self._keep()
        self._in_thread(lambda ix: ix.read(start, self.MAX_LINES, decode_lines, keep),
                        lambda r: self.query_one(Log).show_window(r[0], r[1], at))

    def load_tail(self) -> None:
        """Follow the output again: the pane gets the newest lines of the job's log."""
        from textual.widgets import Log
        from ..jobs.runner import decode_lines

        keep = self._keep()
        if self._reading:
            return
        with self._lock:
            self._tail_loading = True
            self._pending.clear()  # what is pending lies in the log, up to _consumed: read below
            self._unseen = 0
            upto, stop = self._consumed, self._file_lines

        def tail(ix):
            return ix.read(max(0, stop - self.MAX_LINES), self.MAX_LINES, decode_lines, keep, stop=stop)

        def shown(r) -> None:
            texts, numbers = r
            self.query_one(Log).follow(texts, numbers[0] if numbers else 0)
            with self._lock:
                self._tail_loading = False

        if not self._in_thread(tail, shown, upto):
            with self._lock:
                self._tail_loading = False

    def _find_in_log(self, pattern: str, after: int) -> None:
        from ..jobs.outputlog import window_start

        def found(line: int) -> None:
            if line < 0:
                self._not_found()
                return
            self.found_at = line
            self.load_window(window_start(line, self.MAX_LINES), max(0, line - 2))
            _show(self.query_one("#status", Static), self.status_text())

        self._in_thread(lambda ix: ix.search(pattern, after), found)


class TooSmallScreen(Screen):
    """1800-005: smitty needs at least 80 columns by 24 lines."""

    def on_resize(self, event) -> None:
        self.app._check_size()

    def compose(self) -> ComposeResult:
        yield Static("1800-005 SMIT requires a minimum of 24 line by 80 column output display.\n"
                     "\tCheck terminal or window size and try again.", id="toosmall", markup=False)
