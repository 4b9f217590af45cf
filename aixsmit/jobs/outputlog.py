"""A command's whole output, read back from its job's log (``STATE/jobs/ID/output.log``).

COMMAND STATUS keeps only the newest lines in its pane; Home, PgUp past the pane's top, and
``/`` / ``n`` reach the rest through this: a sparse index of line offsets, windows of lines
read from any line, and a search through the whole file. Nothing here imports Textual; calls
that read the file are meant for a worker thread (a 100 MB log is read in about a second).
"""

from __future__ import annotations

import bisect
import os
import threading
from typing import Callable

STEP = 256  # one offset kept every STEP lines
CHUNK = 1 << 22


class LineIndex:
    """Offsets of every STEP-th line of a growing file; only whole lines (ending in a newline)
    are counted. Thread-safe: ``extend`` may run in one thread while another reads."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.offsets = [0]  # offsets[k] = where line k*STEP begins
        self.lines = 0  # whole lines indexed
        self.end = 0  # byte offset after the last whole line indexed
        self._lock = threading.Lock()

    def extend(self, upto: int | None = None) -> int:
        """Index what the file holds now (or up to byte ``upto``); returns the line count."""
        with self._lock:
            with open(self.path, "rb") as f:
                f.seek(self.end)
                pos, lines = self.end, self.lines
                while upto is None or pos < upto:
                    want = CHUNK if upto is None else min(CHUNK, upto - pos)
                    data = f.read(want)
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        break
                    data = data[:cut + 1]
                    n = data.count(b"\n")
                    next_mark = (lines // STEP + 1) * STEP
                    if lines + n >= next_mark:
                        # Only here are newline positions needed: walk to each mark.
                        at, k = -1, lines
                        while k + 1 <= lines + n:
                            at = data.find(b"\n", at + 1)
                            k += 1
                            if k % STEP == 0:
                                self.offsets.append(pos + at + 1)
                    pos += len(data)
                    lines += n
                    if len(data) < want and upto is None:
                        break
                    f.seek(pos)
                self.end, self.lines = pos, lines
            return self.lines

    def offset(self, line: int) -> int:
        """Byte offset where ``line`` (0-based, < lines) begins."""
        base = min(line // STEP, len(self.offsets) - 1)
        pos, k = self.offsets[base], base * STEP
        if k == line:
            return pos
        with open(self.path, "rb") as f:
            f.seek(pos)
            while k < line:
                data = f.read(CHUNK)
                if not data:
                    break
                at = -1
                while k < line:
                    nxt = data.find(b"\n", at + 1)
                    if nxt < 0:
                        break
                    at = nxt
                    k += 1
                pos += at + 1 if k == line else len(data)
                if k < line:
                    f.seek(pos)
        return pos

    def read(self, start: int, count: int, decode: Callable[[bytes], tuple[str, ...]],
             keep: Callable[[str], bool] | None = None, stop: int | None = None) -> tuple[list[str], list[int]]:
        """Up to ``count`` lines from line ``start`` on, before line ``stop``: their texts, and
        their line numbers (lines ``keep`` refuses are passed over, and do not count)."""
        texts: list[str] = []
        numbers: list[int] = []
        last = self.lines if stop is None else min(stop, self.lines)
        if start >= last:
            return texts, numbers
        with open(self.path, "rb") as f:
            f.seek(self.offset(start))
            line = start
            while len(texts) < count and line < last:
                data = f.read(min(CHUNK, self.end - f.tell()))
                cut = data.rfind(b"\n")
                if cut < 0:
                    break
                f.seek(f.tell() - (len(data) - cut - 1))
                for text in decode(data[:cut]):
                    if keep is None or keep(text):
                        texts.append(text)
                        numbers.append(line)
                        if len(texts) >= count:
                            break
                    line += 1
                    if line >= last:
                        break
        return texts, numbers

    def search(self, needle: str, after: int) -> int:
        """The first line after line ``after`` (wrapping round to the start) that holds
        ``needle``, without regard to case; -1 when none does."""
        pattern = needle.lower().encode("utf-8", "surrogateescape")
        if not pattern or not self.lines:
            return -1
        begin = (after + 1) % self.lines
        found = self._scan(pattern, begin, self.lines)
        if found < 0 and begin > 0:
            found = self._scan(pattern, 0, begin)
        return found

    def _scan(self, pattern: bytes, first: int, stop: int) -> int:
        end = self.offset(stop) if stop < self.lines else self.end
        with open(self.path, "rb") as f:
            pos = self.offset(first)
            f.seek(pos)
            line = first
            while pos < end:
                data = f.read(min(CHUNK, end - pos))
                cut = data.rfind(b"\n")
                if cut < 0:
                    break
                data = data[:cut + 1]
                at = data.lower().find(pattern)
                if at >= 0:  # (a pattern typed on one line holds no newline: a match is within a line)
                    return line + data.count(b"\n", 0, at)
                pos += len(data)
                line += data.count(b"\n")
                f.seek(pos)
        return -1


def window_start(line: int, size: int) -> int:
    """The first line of a window of ``size`` lines that shows ``line`` with room above it."""
    return max(0, line - size // 4)


def pane_index(numbers: list[int], line: int) -> int:
    """Where line number ``line`` is (or would be) among a window's line numbers."""
    return min(bisect.bisect_left(numbers, line), max(0, len(numbers) - 1))
