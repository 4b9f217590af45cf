"""One GNU tar run for the backups that are one archive (by level, by name): tar started so that
it dies with aixsmit, its messages passed on (the totals as the command's own line), and a
failure as one error."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

from ..errors import AixsmitError

Emit = Callable[[str, str], None]


def run_tar(argv: list[str], what: str, emit: Emit, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``argv`` (a ``tar --create --totals``; ``pass_fds``: the output file's descriptor,
    safefile.OutputFile.child_path); stdout is returned, stderr emitted. tar's
    exit 1 (a file changed or vanished while read) is the caller's warning; above 1 raises
    ``AixsmitError`` (code 3) naming ``what``, such as "the backup of /home"."""
    from ..osutil import orphan_proof

    argv, preexec = orphan_proof(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", preexec_fn=preexec,
                          pass_fds=pass_fds)
    for line in proc.stderr.splitlines():
        if line.startswith("Total bytes written"):
            emit(f"backup: {line}", "stdout")
        elif line:
            emit(line, "stderr")
    if proc.returncode < 0:  # killed: what it wrote is cut short, whatever it wrote
        raise AixsmitError(f"backup: {what} was stopped by {signal.Signals(-proc.returncode).name}; no archive was "
                           "written.", code=3)
    if proc.returncode > 1:
        raise AixsmitError(f"backup: {what} failed (tar exit status {proc.returncode}); no archive was written.", code=3)
    return proc
