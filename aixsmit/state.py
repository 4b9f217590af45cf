"""Where aixsmit keeps what must survive a crash, and how it writes it safely."""

from __future__ import annotations

import os

# json, tempfile and pathlib are imported where they are used: a command that only appends a
# line to a log (mksysb) should not pay for them at start-up.

DEFAULT_STATE_DIR = "/var/lib/aixsmit"


def state_path() -> str:
    """The state directory (``AIXSMIT_STATE_DIR`` overrides ``/var/lib/aixsmit``), created 0700."""
    path = os.environ.get("AIXSMIT_STATE_DIR") or DEFAULT_STATE_DIR
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def state_dir():
    """state_path() as a pathlib.Path."""
    from pathlib import Path

    return Path(state_path())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, sync: bool = True) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync it, then rename over ``path``.

    A reader never sees a half-written file: either the old content or the new one. With
    ``sync=False`` (state that is only informative) nothing waits for the disk.
    """
    import tempfile
    from pathlib import Path

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync:
        fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """A rename is only durable once the directory entry is on disk too."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_json(path: str | os.PathLike[str], value: object, mode: int = 0o600, sync: bool = True) -> None:
    import json

    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode, sync)
