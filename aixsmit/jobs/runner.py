"""Run an argv in its own process group and turn what it does into events.

* never a shell: an argv list;
* output read in large chunks and handed on in batches of lines (a batch per read), tagged
  stdout or stderr — fast enough for hundreds of thousands of lines a second;
* a progress parser (BackupProgress) sees every line when asked for;
* the end is OK, WARN or FAILED: exit 0 is OK unless the output carried a warning (0512-003),
  a non-zero exit is FAILED — and a reported success with a non-zero exit is still FAILED;
* cancel signals the whole group: TERM, then KILL after a grace period.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..fs.mounts import visible
from ..osutil import die_with_parent, orphan_proof  # noqa: F401  (streams imports them from here)
from .progress import BackupProgress, outcome

OK, WARN, FAILED, RUNNING = "OK", "WARN", "FAILED", "running"


@dataclass(frozen=True)
class Output:
    stream: str  # stdout | stderr
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    percent: float


@dataclass(frozen=True)
class Tick:
    """At least every ``Job.tick`` seconds, output or not (for once-a-second progress lines)."""


@dataclass(frozen=True)
class Finished:
    status: str  # OK, WARN, FAILED
    returncode: int
    seconds: float


Event = Output | Progress | Tick | Finished


_ANSI = None


def _clean(s: str) -> str:
    """Carriage-return overwrites keep their last state; terminal escapes are removed, any
    other control character made visible (:func:`aixsmit.fs.mounts.visible`)."""
    global _ANSI
    if "\r" in s:
        s = s.rsplit("\r", 1)[-1] if not s.endswith("\r") else s.rstrip("\r")
    if "\x1b" in s:
        if _ANSI is None:
            import re

            _ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
        s = _ANSI.sub("", s)
    if "\t" in s:  # layout, not a trick: AIX's own messages indent their second line with one
        s = s.expandtabs(8)
    return visible(s, backslash=False)  # what other control characters remain, shown, not obeyed


_PLAIN = bytes(range(0x20, 0x7F)) + b"\n"


def decode_lines(block: bytes) -> tuple[str, ...]:
    """A block of a command's output (UTF-8, bad bytes replaced) as its lines, split at each
    newline, each cleaned as the pane shows it: a carriage return keeps what was written last,
    terminal escapes are removed."""
    # One decode and one split per read, not per line: this is the hot path for big outputs.
    text = block.decode("utf-8", "replace")
    lines = text.split("\n")
    if block.translate(None, _PLAIN):  # anything but printable ASCII and newlines (one C pass)
        lines = [l if l.isascii() and l.isprintable() else _clean(l) for l in lines]
    return tuple(lines)


@dataclass
class Job:
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    progress: BackupProgress | None = None
    grace: float = 3.0
    batch: bool = False  # a command printing a line per file: read in batches, not per line
    die_with_parent: bool = False  # killed if this process dies (a child that must not outlive it)
    tick: float = 0.0  # yield Tick events this often
    stdin: int | None = None  # a file descriptor for the command's input (else /dev/null)
    pass_fds: tuple[int, ...] = ()  # descriptors the command inherits (as /dev/fd/N)
    proc: subprocess.Popen | None = field(default=None, init=False)
    stdout_seen: bool = field(default=False, init=False)
    stderr_seen: bool = field(default=False, init=False)
    status: str = field(default=RUNNING, init=False)
    returncode: int | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)

    def start(self) -> None:
        stdin = subprocess.DEVNULL if self.stdin is None else self.stdin
        argv, preexec = orphan_proof(self.argv) if self.die_with_parent else (self.argv, None)
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, cwd=self.cwd, start_new_session=True,
                                     preexec_fn=preexec, pass_fds=self.pass_fds)
        if self.batch:
            from ..osutil import grow_pipe

            for pipe in (self.proc.stdout, self.proc.stderr):
                grow_pipe(pipe.fileno())  # room for many lines

    def events(self) -> Iterator[Event]:
        if self.proc is None:
            self.start()
        proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        started = time.monotonic()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        pending = {"stdout": b"", "stderr": b""}
        parser = self.progress
        got, last_tick = 0, started
        try:
            while sel.get_map():
                # A pause while little is waiting: a line per file is then read in batches,
                # not one wake-up per line.
                if self.batch and got < (1 << 16) and proc.poll() is None:
                    time.sleep(0.03)
                got = 0
                if self.tick and time.monotonic() - last_tick >= self.tick:
                    last_tick = time.monotonic()
                    yield Tick()
                for key, _ in sel.select(timeout=min(0.25, self.tick) if self.tick else 0.25):
                    name = key.data
                    chunk = os.read(key.fd, 1 << 20 if self.batch else 1 << 18)
                    got += len(chunk)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        if pending[name]:
                            rest, pending[name] = pending[name], b""
                            yield from self._emit(name, decode_lines(rest), parser)
                        continue
                    data = pending[name] + chunk
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        pending[name] = data
                        continue
                    pending[name] = data[cut + 1:]
                    yield from self._emit(name, decode_lines(data[:cut]), parser)
            rc = proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:
                self.cancel()
        self.returncode = rc
        self.status = outcome(rc, parser)
        yield Finished(self.status, rc, time.monotonic() - started)

    def _emit(self, name: str, lines: tuple[str, ...], parser: BackupProgress | None) -> Iterator[Event]:
        if name == "stdout":
            self.stdout_seen = True
        else:
            self.stderr_seen = True
        yield Output(name, lines)
        if parser is not None:
            changed = False
            for line in lines:
                # Only lines that can carry progress or an outcome are parsed.
                if "of" in line or "0512-" in line or "Backing" in line or "backup" in line:
                    changed = parser.feed(line) or changed
            if changed:
                yield Progress(parser.files_done, parser.files_total, parser.percent)

    def cancel(self) -> None:
        """TERM the whole process group, then KILL it if it is still there after the grace period."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.cancelled = True
        stop_group(proc.pid, self.grace, alive=lambda: proc.poll() is None)


def stop_group(pgid: int, grace: float = 3.0, alive=None) -> None:
    """TERM a process group, then KILL it if it is still there after ``grace`` seconds.

    ``alive`` tells whether the group's leader still runs when it is our own child (polling it
    also reaps it); otherwise the group itself is probed."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if alive is not None:
                if not alive():
                    return
            else:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)


def run(argv: list[str], progress: BackupProgress | None = None, **kw) -> Iterator[Event]:
    """Start ``argv`` and yield its events until it ends."""
    job = Job(argv, progress=progress, **kw)
    job.start()
    yield from job.events()
