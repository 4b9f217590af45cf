"""smit.log and smit.script, appended, mode 0600 (aix-smit.md §1.11).

``smit.script`` holds just the commands run, usable as a shell script; ``smit.log`` traces the
session: screens visited, commands, their output.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..errors import AixsmitError


def stamp() -> str:
    return time.strftime("[%b %d %Y, %H:%M:%S]")


def _append(path: str, text: str) -> None:
    from ..safefile import open_own

    fd = open_own(path)  # a link or another user's file at the name is refused, never written through
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def default_paths() -> tuple[str, str]:
    home = os.path.expanduser("~")
    return os.path.join(home, "smit.log"), os.path.join(home, "smit.script")


@dataclass
class SmitLog:
    log_path: str
    script_path: str

    @classmethod
    def open(cls, log_path: str | None = None, script_path: str | None = None) -> "SmitLog":
        dl, ds = default_paths()
        log = cls(log_path or dl, script_path or ds)
        for path, code, what in ((log.log_path, "1800-093", "log"), (log.script_path, "1800-102", "script")):
            try:
                _append(path, "")
            except OSError as exc:
                raise AixsmitError(f'{code} Could not open SMIT {what} file:\n"{path}".\n{exc.strerror}')
        return log

    def log(self, text: str) -> None:
        try:
            _append(self.log_path, text)
        except OSError:
            pass  # SMIT goes on without its log when the file cannot be written

    def start(self) -> None:
        self.log(f"\n{stamp()}\n    Starting SMIT\n")

    def exit(self) -> None:
        self.log(f"\n{stamp()}\nExiting SMIT\n")

    def screen(self, kind: str, sid: str, title: str, fastpath: bool = False, next_id: str = "") -> None:
        how = " as FastPath" if fastpath else ""
        if kind == "menu":
            self.log(f'\n(Menu screen selected{how},\n\tid          = "{sid}",\n\tid_seq_num  = "0",\n'
                     f'\tnext_id     = "{next_id or sid}",\n\ttitle       = "{title}".)\n')
        elif kind == "selector":
            self.log(f'\n(Selector screen selected{how},\n\tFastPath    = "{sid}",\n\tid          = "{sid}",\n'
                     f'\ttitle       = "{title}".)\n')
        else:
            self.log(f'\n(Dialogue screen selected{how},\n\tFastPath    = "{sid}",\n\tid          = "{sid}",\n'
                     f'\ttitle       = "{title}".)\n')

    def command(self, cmd: str, run: bool = True) -> None:
        """Log the command, and add it to smit.script (SMIT logs -x commands there too)."""
        self.log(f"\n{stamp()}\n    Command_to_Execute follows below:\n>> {cmd}\n")
        if not run:
            self.log("\n(SMIT -x CommandString flag set)\nCommand has been logged to script file.\n")
        try:
            _append(self.script_path, f"#\n#     {stamp()}\n#\n{cmd}\n")
        except OSError:
            pass

    def not_run(self, cmd: str, why: str = "SMIT -X CommandString flag set.") -> None:
        self.log(f"\n{stamp()}\n    Command_to_Execute follows below:\n>> {cmd}\n"
                 f"**** internal command was not run. ({why}) ****\n")

    def output_start(self) -> None:
        self.log("\n    Output from Command_to_Execute follows below:\n---- start ----\n")

    def output(self, lines: list[str]) -> None:
        if lines:
            self.log("\n".join(lines) + "\n")

    def output_bytes(self, data: bytes) -> None:
        """Whole lines of a command's output, as it wrote them (no decoding on the way)."""
        try:
            from ..safefile import open_own

            fd = open_own(self.log_path)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError:
            pass

    def output_end(self, size: int) -> None:
        self.log(f"---- end ----\n\nSize of output = {size} bytes.\n")

    def image(self, text: str, fastpath: str) -> None:
        self.log(f"\f---------- start of screen ----------\n{text.rstrip()}\n---------- end of screen ----------\n"
                 f'Current fast path:\n    "{fastpath}"\n')
