"""The detached job's supervisor: a small process that outlives the terminal.

It is started as ``python -S`` and imports only a few built-in modules (no JSON, no regular
expressions; of aixsmit only :mod:`aixsmit.osutil` and :mod:`aixsmit.safefile`), so the
command starts a few milliseconds after the operator pressed Enter. Everything it needs comes on its command line::

    python -S -m aixsmit.jobs.supervise JOBDIR PROGRESS(0|1) ARGV...

or, for a spare started ahead of need, the same NUL-separated on standard input.

It runs the command in a process group of its own:

* standard output and error come through two pipes, read in large gulps and appended to
  ``output.log`` as whole lines, as bytes (never decoded here); a pipe read lazily costs a
  command that writes a line at a time less than a file on disk would (measured), and the
  pipes are not polled while the command runs (see the loop in :func:`main`);
* its own state goes to ``run`` beside the job's ``job.json`` (which only the menus write):
  ``key value`` lines — the supervisor's pid and the command's process group at once, whether
  stdout and stderr had output as soon as they do, and at the end the exit status and OK,
  WARN or FAILED (for a backup, the 0512 messages in the log count as well as the exit status,
  as in :class:`aixsmit.jobs.runner.Job`). :func:`aixsmit.jobs.detached.read` puts the two
  together.

Hangups and Ctrl-C do not reach it or the command (both are ignored, as under nohup); the
menus cancel a job by signalling its process group.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from ..osutil import grow_pipe
from ..safefile import open_own, write_file

LOG, RUN = "output.log", "run"


def write_state(directory: str, state: dict) -> None:
    """``run``, replaced whole (:func:`aixsmit.safefile.write_file`, not synced: it is only
    informative): a reader sees the old state or the new one."""
    write_file(os.path.join(directory, RUN), "".join(f"{k} {v}\n" for k, v in state.items()).encode(), sync=False)


def read_state(directory: str) -> dict[str, str]:
    try:
        with open(os.path.join(directory, RUN)) as f:
            return dict(line.rstrip("\n").split(" ", 1) for line in f if " " in line)
    except OSError:
        return {}


def _exec(argv: list[str], out_fd: int, err_fd: int) -> None:
    """In the child: the command's own process group, output to the pipes, then exec."""
    try:
        os.setpgid(0, 0)
        # Python ignores SIGPIPE and SIGXFSZ for itself; the command gets the defaults back.
        for s in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"{argv[0]}: {exc.strerror or exc}\n".encode())
    finally:
        os._exit(127)


def _outcome(log_path: str, rc: int, progress: bool) -> str:
    if rc != 0:
        return "FAILED"
    if not progress:
        return "OK"
    # A backup: only the lines with a 0512 message can change the outcome; find them without
    # reading the log line by line.
    from .progress import BackupProgress, outcome

    parser = BackupProgress()
    with open(log_path, "rb") as f:
        data = f.read()
    at = data.find(b"0512-")
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        parser.feed(data[start:end].decode("utf-8", "replace"))
        at = data.find(b"0512-", end)
    return outcome(rc, parser)


class Pace:
    """How long output gathers in a running command's pipes before the next read: 5 ms, less
    when it comes fast enough to fill a quarter of the pipe by then (at least 1 ms); after
    100 ms without output, longer and longer, up to 40 ms.

    What came since the last wait sets the next one, counting every read in between: after a
    pipe found half full, the read again at once usually finds nothing, and that is no quiet
    (taking it for one left a command writing 70 MB/s blocked on its full pipe for 35 ms in
    every 40: three times its time, in one run of two, measured)."""

    def __init__(self, room: int, now: float):
        self.room, self.wait = room, 0.005
        self.read_at = self.last_data = now
        self.gathered = 0

    def read(self, got: int) -> None:
        self.gathered += got

    def next_wait(self, now: float) -> float:
        if self.gathered:
            rate = self.gathered / max(now - self.read_at, 1e-4)
            self.wait = max(0.001, min(0.005, self.room / 4 / rate))
            self.last_data = now
        elif now - self.last_data >= 0.1:
            self.wait = min(self.wait * 2, 0.04)
        else:
            self.wait = 0.005
        self.read_at, self.gathered = now, 0
        return self.wait


def main(directory: str, progress: bool, argv: list[str]) -> int:
    for s in (signal.SIGHUP, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    log_path = os.path.join(directory, LOG)
    log_fd = open_own(log_path)  # appended to: a link or another user's file in its place is refused
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # Room for many lines between two reads, so the command does not wait when this process
    # gets the CPU late.
    room = min(grow_pipe(fd, (16 << 20, 1 << 20)) for fd in (out_r, err_r))
    pid = os.fork()
    if pid == 0:
        _exec(argv, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    try:
        os.setpgid(pid, pid)  # also here, so a cancel right away finds the group
    except OSError:
        pass
    state = {"supervisor": os.getpid(), "pgid": pid, "stdout": 0, "stderr": 0}
    write_state(directory, state)
    streams = {out_r: "stdout", err_r: "stderr"}
    partial = {out_r: b"", err_r: b""}
    for fd in streams:
        os.set_blocking(fd, False)
    try:
        ended = os.pidfd_open(pid)  # readable when the command exits: no need to sleep past that
    except (AttributeError, OSError):
        ended = -1
    running, pace = True, Pace(room, time.monotonic())
    while streams:
        got = 0
        now = time.monotonic()
        for fd in list(streams):
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            got += len(data)
            if data:
                # Whole lines only, so a line of one stream is never cut by the other's.
                data = partial[fd] + data
                cut = data.rfind(b"\n") + 1
                partial[fd], data = data[cut:], data[:cut]
                if not state[streams[fd]]:
                    state[streams[fd]] = 1
                    write_state(directory, state)
            else:
                data, partial[fd] = partial[fd], b""
                del streams[fd]
                os.close(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(log_fd, view):]
        pace.read(got)
        if not streams or got >= room // 2:
            continue  # a pipe half full is read again at once: the command never waits on it
        if running:
            # While the command runs, its pipes are never polled: once a pipe has been polled,
            # Linux wakes its readers on every write from then on, and a command writing a
            # line at a time pays for that on each line (7% of its time, measured). Output
            # gathers for a while (Pace); the command's exit ends the wait at once.
            wait = pace.next_wait(now)
            if ended >= 0:
                running = not select.select([ended], [], [], wait)[0]
            else:
                time.sleep(wait)
                running = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        elif not got:
            # The command has ended; something it started may still hold the pipes open.
            select.select(list(streams), [], [], 0.25)
    if ended >= 0:
        os.close(ended)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    os.close(log_fd)
    state.update(status=_outcome(log_path, rc, progress), rc=rc, end=repr(time.time()))
    write_state(directory, state)
    return 0


def spare() -> int:
    """Wait for a job on standard input (directory, progress flag and argv, NUL-separated),
    then run it; an empty input (the menus went away first) ends it quietly."""
    chunks = []
    while True:
        data = os.read(0, 1 << 16)
        if not data:
            break
        chunks.append(data)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    fields = [os.fsdecode(f) for f in b"".join(chunks).split(b"\0")]
    if len(fields) < 3:
        return 0
    return main(fields[0], fields[1] == "1", fields[2:])


if __name__ == "__main__":
    os._exit(main(sys.argv[1], sys.argv[2] == "1", sys.argv[3:]))
