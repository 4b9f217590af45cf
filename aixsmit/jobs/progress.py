"""The progress grammar of mksysb, savevg and backup, on AIX and from aixsmit (aix-smit.md §3.5).

Public: other tools rely on :class:`BackupProgress`. Feed it every output line; it keeps
``files_done``, ``files_total``, ``percent``, ``bytes_done`` and ``bytes_total`` (0 when the
command does not say), ``succeeded`` (True after 0512-038, False after a failure message, None
before either) and ``warning`` (True after 0512-003).

aixsmit's engine adds the bytes handed to tar to AIX's counter line, after it, so a reader of
AIX's grammar still reads it: ``120 of 500 files backed up (24%) 52428800 of 209715200 bytes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOTAL = re.compile(r"^Backing up (\d+) files")
# The counter may follow a run of progress dots on the same line; "backed up" is optional.
_COUNT = re.compile(r"(\d+) of (\d+) files(?: backed up)? \((\d+)%\)(?: (\d+) of (\d+) bytes)?")
# Reading an image back (verify): "52428800 of 209715200 bytes read (25%)".
_READ = re.compile(r"^(\d+) of (\d+) bytes read \((\d+)%\)")
_OK = re.compile(r"^0512-038 (\S+): Backup Completed Successfully\.")
_FAIL = re.compile(r"^(?:\S+: )?0512-0(0[4-9]|1\d|2[0-3]|4[12])\b|^0512-005 |^0512-007 |^\S+: 0512-0(0[5-9]|1\d|2[0-3])\b")
_WARN = re.compile(r"0512-003 ")
# AIX backup by inode: "12.34% of the backup is done." (aix-smit.md §3.9)
_INODE_PCT = re.compile(r"([\d.]+)% of the backup is done")
_INODE_DONE = re.compile(r"^(?:backup: )?The backup is complete\.")


@dataclass
class BackupProgress:
    files_done: int = 0
    files_total: int = 0
    percent: float = 0.0
    succeeded: bool | None = None
    warning: bool = False
    program: str = ""
    message: str = ""
    bytes_done: int = 0
    bytes_total: int = 0

    def feed(self, line: str) -> bool:
        """Read one output line; True when it changed the progress or the outcome."""
        if not line:
            return False
        m = _COUNT.search(line)
        if m:
            self.files_done, self.files_total = int(m.group(1)), int(m.group(2))
            self.percent = float(m.group(3))
            if m.group(4) is not None:
                self.bytes_done, self.bytes_total = int(m.group(4)), int(m.group(5))
            return True
        m = _TOTAL.match(line)
        if m:
            self.files_total = int(m.group(1))
            return True
        m = _READ.match(line)
        if m:
            self.bytes_done, self.bytes_total, self.percent = int(m.group(1)), int(m.group(2)), float(m.group(3))
            return True
        m = _OK.match(line)
        if m:
            self.succeeded = True
            self.program = m.group(1)
            if self.files_total:
                self.files_done, self.percent = self.files_total, 100.0
            self.bytes_done = self.bytes_total
            self.message = line.strip()
            return True
        if _WARN.search(line):
            self.warning = True
            self.message = line.strip()
            return True
        if _FAIL.search(line):
            self.succeeded = False
            self.message = line.strip()
            return True
        m = _INODE_PCT.search(line)
        if m:
            self.percent = float(m.group(1))
            return True
        if _INODE_DONE.match(line):
            self.succeeded = True
            self.percent = 100.0
            return True
        return False

    @staticmethod
    def is_tick(line: str) -> bool:
        """A counter line short of the end: a progress bar shows it; the pane and smit.log need
        not repeat it every second (the last one, at 100%, stays)."""
        m = _COUNT.search(line) or _READ.match(line)
        return m is not None and m.group(1) != m.group(2)

    @property
    def fraction(self) -> float:
        """Done so far, 0..1: by bytes when the command says them (a few large files would
        otherwise hold a count of names near its end for most of the run), else by files."""
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(1.0, self.files_done / self.files_total)
        return min(1.0, self.percent / 100.0)


def outcome(returncode: int, parser: BackupProgress | None = None) -> str:
    """OK, WARN or FAILED for a command that ended with ``returncode``: a non-zero exit or a
    reported failure is FAILED (even if the command said 0); a 0512-003 warning is WARN."""
    if returncode != 0 or (parser is not None and parser.succeeded is False):
        return "FAILED"
    return "WARN" if parser is not None and parser.warning else "OK"
