"""Running commands: argv lists only, never a shell."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from ..errors import AixsmitError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The command's last non-empty stderr line (or stdout), for one-line errors."""
        for text in (self.stderr, self.stdout):
            lines = [l.strip() for l in text.splitlines() if l.strip()]
            if lines:
                return lines[-1]
        return f"exit status {self.rc}"


def run(argv: list[str], merge: bool = False, timeout: float | None = 600, pass_fds: tuple[int, ...] = ()) -> Result:
    """Run ``argv``; ``pass_fds`` stay open in the child at the same numbers (``/proc/self/fd/N``)."""
    try:
        proc = subprocess.run(
            argv,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            timeout=timeout,
            errors="surrogateescape",
            text=True,
        )
    except FileNotFoundError:
        raise AixsmitError(f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        raise AixsmitError(f"{argv[0]}: did not finish within {timeout:.0f} seconds")
    return Result(tuple(argv), proc.returncode, proc.stdout or "", proc.stderr or "")
