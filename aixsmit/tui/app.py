"""aixsmit's SMIT: ``aixsmit [-l FILE] [-s FILE] [-x] [-X] [--root DIR] [FASTPATH]``."""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import threading
import time

from textual import events
from textual.app import App

from ..errors import AixsmitError
from ..fs.mounts import visible
from ..smit import command as cmdbuild
from ..smit.log import SmitLog
from ..smit.model import MenuError, MenuTree, load_tree
from ..smit.services import SERVICES
from .keys import esc_digits_as_keys, esc_labels_wanted
from .popups import PRESS_RETURN, MessagePopup, names
from .screens import CommandStatusScreen, DialogScreen, MenuScreen, TooSmallScreen, warm_up

esc_digits_as_keys()

ESC_WINDOW = 2.0  # seconds between Esc and the digit (SMIT's Esc+N)


class AixsmitApp(App):
    CSS_PATH = "smit.tcss"
    TITLE = "aixsmit"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, tree: MenuTree, fastpath: str = "top_menu", root: str = "/", host_name: str | None = None,
                 smit_log: SmitLog | None = None, no_run: bool = False, no_exec: bool = False,
                 esc_labels: bool | None = None, dry_run: bool = False, ascii_only: bool = False):
        super().__init__()
        from ..host import host_name as detect

        self.menus = tree
        self.start_fastpath = fastpath
        self.root = os.path.realpath(root) if root else "/"
        self.host_name = host_name or detect()
        self.smit_log = smit_log or SmitLog.open()
        self.no_run = no_run  # -x: log the command, do not run it
        self.no_exec = no_exec  # -X: run nothing at all, lists included
        self.esc_labels = esc_labels_wanted(esc_labels)
        self.dry_run = dry_run  # every screen shows its command and runs none: nothing is written
        self.ascii_only = ascii_only  # no box drawing or other non-ASCII glyph on screen
        # The Linux console's font holds the IBM PC's (CP437) glyphs: no eighth blocks.
        self.console_font = os.environ.get("TERM", "") == "linux"
        self.glyphs = ("#", ".") if ascii_only else ("\u2588", "\u2591")  # the bar: done, to do (CP437 219, 176)
        self.no_mouse = False
        self.last_status: str | None = None
        self.last_files: int | None = None  # files the last command with progress backed up
        self._esc_at = 0.0
        self._started_at = time.time()
        self._leaving = False  # set as the app leaves (on_unmount)
        self._system = None
        self._too_small = False

    # --- services ----------------------------------------------------------------------
    @property
    def system(self):
        if self._system is None:
            from ..fs.table import System

            self._system = System(root=self.root, host_name=self.host_name)
        return self._system

    def list_items(self, name: str) -> list[tuple[str, str]]:
        if self.no_exec:
            self.smit_log.not_run(f"(list) {name}")
            return []
        try:
            return [(i.value, i.text) for i in SERVICES[name](self.system)]
        except AixsmitError as exc:
            self.push_screen(MessagePopup("ERROR MESSAGE", f"{exc}\n\n{PRESS_RETURN}"))
            return []

    def open_list(self, title: str, name: str, chosen, multi: bool = False, selected: list[str] | None = None,
                  help_text: str = "") -> None:
        """F4: the list pop-up at once, saying it is being built; the service ``name`` builds it
        in a thread (services bound their own searches), and the pop-up shows it when done.
        ``chosen`` gets the value picked (a list with ``multi``), or None."""
        from .popups import ListPopup

        if self.no_exec:
            self.smit_log.not_run(f"(list) {name}")
            self.push_screen(MessagePopup("ERROR MESSAGE", "1800-051 There are no items of this type.\n\n" + PRESS_RETURN))
            return
        popup = ListPopup(title, None, multi=multi, selected=selected, help_text=help_text)
        self.push_screen(popup, chosen)

        def build() -> None:
            try:
                result = [(i.value, i.text) for i in SERVICES[name](self.system)]
            except (AixsmitError, OSError) as exc:
                result = exc
            try:
                self.call_from_thread(done, result)
            except RuntimeError:
                pass  # the app has closed

        def done(result) -> None:
            if getattr(popup, "_answered", False):
                return  # cancelled while it was built
            if isinstance(result, Exception) or not result:
                popup.dismiss(None)
                why = str(result) if isinstance(result, Exception) else "1800-051 There are no items of this type."
                self.push_screen(MessagePopup("ERROR MESSAGE", f"{why}\n\n{PRESS_RETURN}"))
            else:
                popup.fill(result)

        threading.Thread(target=build, name=f"aixsmit-list-{name}", daemon=True).start()

    # --- navigation --------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.ascii_only:
            self.add_class("-ascii")
        if self.console_font:
            from .glyphs import use_whole_cell_scrollbars

            use_whole_cell_scrollbars()
        # A 16-colour terminal (the Linux console, vt100, xterm): the ANSI theme uses the
        # terminal's own colours instead of approximating truecolor ones.
        if self.console.color_system in ("standard", "windows") and not os.environ.get("TEXTUAL_THEME"):
            self.theme = "ansi-dark"
        self.smit_log.start()
        self.open(self.start_fastpath, as_fastpath=True)
        self._check_size()
        self.call_after_refresh(self._offer_remount)
        self.call_after_refresh(self._offer_jobs)
        # Not while the first screen is being drawn: it would take a CPU from it.
        self.set_timer(1.0, self._prepare_supervisor)
        self.set_timer(1.0, warm_up)
        self._watch_terminal()

    def _prepare_supervisor(self) -> None:
        """A supervisor started ahead (in the background, while the operator reads the
        screen), so a command starts the moment Enter is pressed; and old jobs' folders
        removed (:func:`aixsmit.jobs.detached.prune`)."""
        if not (self.no_run or self.no_exec or self.dry_run):
            from ..jobs import detached

            def ahead() -> None:
                detached.prepare()
                if self._leaving:
                    # The app left while the spare started: let it go too. (The app's own
                    # release came first; a spare kept would start the next app's command
                    # with this one's environment: its state directory, in tests.)
                    detached.release()
                    return
                detached.prune()

            threading.Thread(target=ahead, name="aixsmit-spare", daemon=True).start()

    def on_unmount(self) -> None:
        from ..jobs import detached

        if self.console_font:
            from textual.scrollbar import ScrollBar, ScrollBarRender

            ScrollBar.renderer = ScrollBarRender

        self._leaving = True  # before the release: a spare started meanwhile sees it (ahead)
        detached.release()

    # --- the terminal going away -----------------------------------------------------------
    def _watch_terminal(self) -> None:
        """A closed SSH connection or terminal: leave at once (commands run on, detached).

        Not through the event loop: with the terminal gone, Textual's writer can no longer
        drain its queue and the loop may be stuck behind it. A plain signal handler and a small
        watchdog thread do not depend on it; there is no terminal left to restore."""
        import signal
        import threading

        signal.signal(signal.SIGHUP, lambda signum, frame: self._hangup())
        stdin = sys.__stdin__
        if stdin is not None and stdin.isatty():
            fd = stdin.fileno()

            def watch() -> None:
                while True:
                    time.sleep(2.0)
                    try:
                        os.tcgetpgrp(fd)
                    except OSError:
                        self._hangup()

            threading.Thread(target=watch, name="aixsmit-tty-watch", daemon=True).start()

    def _hangup(self) -> None:
        try:
            self.smit_log.log(f"\n{time.strftime('[%b %d %Y, %H:%M:%S]')}\n"
                              "    The terminal went away; running commands go on.\n")
        finally:
            os._exit(0)

    def _offer_jobs(self) -> None:
        """Commands started earlier that still run, or ended unseen: offer to show them."""
        if self.no_exec or self.dry_run:
            return
        if self.start_fastpath == "walkthrough":
            return  # not over the guide (or a pop-up over it): the guide picks up its own job
        from ..jobs import detached

        try:
            jobs = [j for j in detached.all_jobs() if j.start < self._started_at
                    and (j.status == detached.RUNNING or not detached.seen(j))]
        except OSError:
            return
        if not jobs:
            return
        lines = [f"  {j.status:<8} {time.strftime('%b %d %H:%M', time.localtime(j.start))}  {visible(j.title)}" for j in jobs[-5:]]

        def answer(ok):
            if ok:
                self.open("jobs")

        self.push_screen(MessagePopup(
            "INFORMATION MESSAGE", "Commands started earlier (they run on without a screen):\n" + "\n".join(lines)
            + "\n\n    Press Enter to see them.\n    Press Cancel to go on."), answer)

    def _offer_remount(self) -> None:
        """File systems left unmounted by an earlier run (a crash): say so, offer to mount them."""
        from ..fs.unmount import Ledger

        try:
            left = Ledger().under(self.root)
        except AixsmitError:
            return
        if not left or self.no_exec or self._mounts_in_use():
            return
        argv = ["aixsmit", "cmd", "mount"] + (["--root", self.root] if self.root != "/" else []) + ["--ledger"]

        def answer(ok):
            if ok:
                from ..smit.model import Screen as Def

                self.run_command(Def(kind="dialog", id="mountg", title="Mount a Group of File Systems",
                                     command={self.host_name: argv}), argv)

        self.push_screen(MessagePopup(
            "WARNING", "User file systems were left unmounted by an earlier aixsmit run:\n    "
                       + names(e.mount_point for e in left)
                       + "\n\n    Press Enter to mount them again now.\n    Press Cancel to leave them unmounted."), answer)

    @staticmethod
    def _mounts_in_use() -> bool:
        """Whether a run holds the mount lock now (a guided backup between its unmount and its
        mount, say): what the ledger holds is then that run's to mount again, not left over,
        and mount --ledger would be refused until it ends."""
        from ..state import LockBusy, mount_lock

        try:
            with mount_lock("aixsmit menus"):
                return False
        except LockBusy:
            return True
        except AixsmitError:
            return False  # an unusable state directory: the ledger's own reading says so

    def open(self, fastpath: str, preset: dict[str, str] | None = None, as_fastpath: bool = False) -> None:
        try:
            d = self.menus.get(fastpath)
        except MenuError as exc:
            self.push_screen(MessagePopup("ERROR MESSAGE", f"{exc}\n\n{PRESS_RETURN}"))
            return
        self.smit_log.screen(d.kind, d.id, d.title, fastpath=as_fastpath)
        if d.kind == "menu":
            self.push_screen(MenuScreen(d))
        elif d.kind == "guide" and d.id == "jobs":
            from .jobs import JobsScreen

            self.push_screen(JobsScreen(d))
        elif d.kind == "guide":
            from .walkthrough import WalkthroughScreen

            self.push_screen(WalkthroughScreen(d))
        elif d.kind == "dialog" and d.direct:
            try:
                argv = cmdbuild.build(d, dict(preset or {}), self.host_name, self.root)
            except AixsmitError as exc:
                self.push_screen(MessagePopup("ERROR MESSAGE", f"{exc}\n\n{PRESS_RETURN}"))
                return
            self.run_command(d, argv)
        else:
            self.push_screen(DialogScreen(d, preset))

    def go_back(self) -> None:
        # The base screen and the first SMIT screen stay: F3 there leaves, as in smitty.
        if len(self.screen_stack) <= 2:
            self.exit_smit()
        else:
            self.pop_screen()

    def run_command(self, d, argv: list[str], next_label: str = "", on_next=None) -> None:
        logged = cmdbuild.display(argv)  # the log and the script keep the command as it runs
        shown = visible(logged)
        if self.no_exec:
            self.smit_log.not_run(logged)
            self.push_screen(MessagePopup("INFORMATION MESSAGE",
                                          "**** internal command was not run. (SMIT -X CommandString flag set.) ****\n\n"
                                          + shown + "\n\n" + PRESS_RETURN))
            return
        if self.dry_run:
            # Whichever screen the dry run leads to (the guide's last menu offers savevg, the
            # crash offer runs mount): its command is shown, and nothing runs.
            self.smit_log.not_run(logged, "dry run")
            self.push_screen(MessagePopup("INFORMATION MESSAGE", "(dry run) This command would run:\n\n"
                                          + shown + "\n\n" + PRESS_RETURN))
            return
        self.smit_log.command(logged, run=not self.no_run)
        if self.no_run:
            self.push_screen(MessagePopup("INFORMATION MESSAGE",
                                          "(SMIT -x CommandString flag set)\nCommand has been logged to script file.\n\n"
                                          + shown + "\n\n" + PRESS_RETURN))
            return
        self.push_screen(CommandStatusScreen(d, argv, progress=bool(d.progress), next_label=next_label, on_next=on_next))

    def command_finished(self, screen, final) -> None:
        """Hook: the command shown by ``screen`` ended (tests and later features listen here)."""
        self._system = None  # mounts may have changed: read them again next time
        # For the next command: not during this one (it takes a CPU), and not while its end is
        # being drawn (starting an interpreter takes one too).
        self.set_timer(0.5, self._prepare_supervisor)
        self.last_status = final.status
        self.last_files = screen.files_total

    # --- SMIT keys ---------------------------------------------------------------------
    async def on_event(self, event: events.Event) -> None:
        # Esc then a digit (within ESC_WINDOW) is F1..F10 where function keys do not arrive;
        # a terminal that sends them fast enough delivers "alt+digit" instead.
        if isinstance(event, events.Key) and not getattr(event, "is_forwarded", False):
            key = event.key
            digit = None
            if key.startswith("alt+") and key[4:].isdigit() and len(key) == 5:
                digit = key[4:]
            elif key.isdigit() and len(key) == 1 and time.monotonic() - self._esc_at < ESC_WINDOW:
                digit = key
            if digit is not None:
                self._esc_at = 0.0
                # The function key itself, pressed again: it goes where F1..F10 go.
                self.simulate_key(f"f{int(digit) or 10}")
                return
            if key == "escape":
                self._esc_at = time.monotonic()
                return
            self._esc_at = 0.0
        await super().on_event(event)

    def on_resize(self, event: events.Resize) -> None:
        self._check_size()

    def _check_size(self) -> None:
        small = self.size.width < 80 or self.size.height < 24
        if small and not isinstance(self.screen, TooSmallScreen):
            self.push_screen(TooSmallScreen())
        elif not small and isinstance(self.screen, TooSmallScreen):
            self.pop_screen()

    def push_screen(self, screen, callback=None, wait_for_dismiss: bool = False, **kw):
        """Textual's, but 1800-005 (the terminal is too small) stays on top: a screen that comes
        meanwhile (a command's end, a pop-up) goes under it, and is there when it goes."""
        if isinstance(self.screen, TooSmallScreen) and not isinstance(screen, TooSmallScreen):
            self.pop_screen()
            shown = super().push_screen(screen, callback, wait_for_dismiss, **kw)
            super().push_screen(TooSmallScreen())
            return shown
        return super().push_screen(screen, callback, wait_for_dismiss, **kw)

    def screen_text(self) -> str:
        """The screen as the terminal shows it: ``height`` lines of ``width`` cells, popups over
        the screens under them (F8's image, and what tests read). Taken from Textual's own
        screenshot (``export_screenshot``), the one public rendering of the whole screen."""
        width, height = self.size
        return svg_text(self.export_screenshot(simplify=True), width, height)

    def current_fastpath(self) -> str:
        for s in reversed(self.screen_stack):
            fp = getattr(s, "fastpath", "")
            if fp:
                return fp
        return ""

    def action_image(self) -> None:
        fp = self.current_fastpath()

        def answer(ok):
            if ok:
                self.smit_log.image(text, fp)

        text = self.screen_text()
        self.push_screen(MessagePopup("PRINT SCREEN", "Press Enter to save the screen image  \n    in the log file.\n"
                                      "Press Cancel to return to the application.\n\n"
                                      f'Current fast path:\n    "{fp}"'), answer)

    def action_shell(self) -> None:
        if os.environ.get("SMIT_SHELL", "").lower() == "n":
            self.push_screen(MessagePopup("ERROR MESSAGE", "The Shell function is not available for this\nsession.\n\n"
                                          + PRESS_RETURN))
            return

        def answer(ok):
            if ok:
                shell = os.environ.get("SHELL") or "/bin/sh"
                with self.suspend():
                    print("Starting up new command shell ...", flush=True)
                    subprocess.call([shell])

        self.push_screen(MessagePopup("SHELL ESCAPE", "Press Enter to proceed to your shell.\n"
                                      "    Once in the shell, normal exit will return\n    you to this application.\n"
                                      "Press Cancel to return to the application."), answer)

    def action_exit_smit(self) -> None:
        def answer(ok):
            if ok:
                self.exit_smit()

        self.push_screen(MessagePopup("EXIT", "Press Enter to exit the application.\n"
                                      "Press Cancel to return to the application."), answer)

    def exit_smit(self) -> None:
        self.smit_log.exit()
        self.exit(0)


_SVG_LINE = re.compile(r'-line-0">\s*<rect x="0" y="[^"]*" width="([0-9.e+]+)"')
_SVG_TEXT = re.compile(r'<text class="[^"]*" x="([0-9.e+-]+)" y="[^"]*" textLength="[^"]*" '
                       r'clip-path="url\(#[^)]*-line-(\d+)\)">(.*?)</text>', re.S)


def svg_text(svg: str, width: int, height: int) -> str:
    """The text of a terminal screenshot in Rich's SVG (``Console.export_svg``, which Textual's
    ``App.export_screenshot`` returns): ``height`` lines, each ``width`` cells padded with
    spaces. Each run of text is a ``<text>`` element on its line's clip path, at x = column x
    cell width (the line's clip rectangle is ``width`` cells wide); a character two cells wide
    is followed by an empty cell, as a terminal shows it."""
    from rich.cells import cell_len

    rows = [[" "] * width for _ in range(height)]
    clip = _SVG_LINE.search(svg)
    cell = float(clip.group(1)) / width if clip else 12.2  # Rich's default: 20 px x 0.61
    for x, line, content in _SVG_TEXT.findall(svg):
        y = int(line)
        if y >= height:
            continue
        col = round(float(x) / cell)
        for ch in html.unescape(content.replace("&#160;", " ")):
            if col >= width:
                break
            rows[y][col] = ch
            w = cell_len(ch)
            for extra in range(1, w):
                if col + extra < width:
                    rows[y][col + extra] = ""
            col += max(w, 1)
    return "\n".join("".join(r) for r in rows)


def utf8_locale(env=None) -> bool:
    """The locale's character set, as the terminal will render it (LC_ALL, LC_CTYPE, LANG).

    Python itself sets LC_CTYPE=C.UTF-8 when it starts in the C locale (PEP 538): that one says
    nothing about the terminal, so with LANG C or POSIX (or unset) it does not count."""
    env = os.environ if env is None else env
    lang = env.get("LANG", "")
    coerced = env.get("LC_CTYPE") == "C.UTF-8" and lang in ("", "C", "POSIX") and not env.get("LC_ALL")
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = env.get(var)
        if value and not (var == "LC_CTYPE" and coerced):
            return "utf-8" in value.lower() or "utf8" in value.lower()
    return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aixsmit",
        description="SMIT-style menus for the AIX backup strategy. 'aixsmit cmd --help' lists the commands.",
        epilog="keys: F1 help, F2 refresh, F3 cancel, F4 list, F5 reset, F6 command, F7 edit/select, F8 image, "
               "F9 shell, F10 exit; Esc then 1..0 does the same on terminals without function keys.\n"
               "exit status: 0 normal exit; 1 an error (such as 1800-007 for an unknown fast path).")
    p.add_argument("-l", metavar="FILE", help="write the log to FILE instead of $HOME/smit.log")
    p.add_argument("-s", metavar="FILE", help="write the script to FILE instead of $HOME/smit.script")
    p.add_argument("-x", action="store_true", help="do not run the task's command; log it to the script and log")
    p.add_argument("-X", action="store_true", help="do not run any command (no lists either); for viewing screens")
    p.add_argument("--root", metavar="DIR", default="/", help="treat DIR as / for everything run")
    p.add_argument("--dry-run", action="store_true",
                   help="every screen, the guided backup's too, shows its command and runs none")
    p.add_argument("--no-mouse", action="store_true", help="do not ask the terminal for mouse reports")
    p.add_argument("--ascii", action="store_true", default=None,
                   help="ASCII only: no box drawing or other non-ASCII glyphs (automatic when the locale is not UTF-8)")
    p.add_argument("--esc-keys", action="store_true", default=None,
                   help="label the keys Esc+1..Esc+0 (automatic on vt100 and similar terminals)")
    p.add_argument("fastpath", nargs="?", default="top_menu", metavar="FASTPATH",
                   help="open this screen directly (for example mksysb, fs, backsys)")
    return p


def make_app(argv: list[str]) -> AixsmitApp:
    args = build_parser().parse_args(argv)
    tree = load_tree(services=set(SERVICES))
    tree.get(args.fastpath)  # 1800-007 before the screen is taken over
    if args.root != "/" and not os.path.isdir(args.root):
        raise AixsmitError(f"--root {args.root}: not a directory")
    log = SmitLog.open(args.l, args.s)
    app = AixsmitApp(tree, args.fastpath, args.root, smit_log=log, no_run=args.x, no_exec=args.X,
                     esc_labels=args.esc_keys, dry_run=args.dry_run,
                     ascii_only=args.ascii if args.ascii is not None else not utf8_locale())
    app.no_mouse = args.no_mouse
    return app


def run_tui(argv: list[str]) -> int:
    try:
        app = make_app(argv)
    except AixsmitError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    app.run(mouse=not app.no_mouse)
    return app.return_code or 0
