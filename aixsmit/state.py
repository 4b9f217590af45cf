"""Where aixsmit keeps what must survive a crash, how it writes it safely, and the one lock.

The state directory (``AIXSMIT_STATE_DIR``, default ``/var/lib/aixsmit``) holds the unmount
ledger that root acts on, so it is trusted only as sshd trusts a key file: it must be a real
directory (not a symbolic link), owned by the user running aixsmit, and writable by nobody else;
so must every directory above it, unless it has the sticky bit (``/tmp``). Anything else is
refused with :class:`StateDirError` before a byte is read from it.

:func:`mount_lock` serialises everything that unmounts or mounts file systems again (umount,
mount, sysbackup, scheduled runs, the walkthrough): an exclusive ``flock`` on ``mount.lock`` in
the state directory. The kernel drops it when its holder dies, even by SIGKILL, so a lock is
never stale.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from contextlib import contextmanager
from collections.abc import Iterator

from .errors import AixsmitError

# json, tempfile and pathlib are imported where they are used: a command that only appends a
# line to a log (mksysb) should not pay for them at start-up.

DEFAULT_STATE_DIR = "/var/lib/aixsmit"
LOCK_NAME = "mount.lock"


class StateDirError(AixsmitError):
    """The state directory is not safe to trust (symlink, wrong owner, loose mode) or unusable."""


class LockBusy(AixsmitError):
    """Another process holds the mount lock. ``pid``, ``command`` and ``since`` name it
    (``pid`` 0 and empty strings when the system cannot tell)."""

    def __init__(self, message: str, pid: int = 0, command: str = "", since: str = ""):
        super().__init__(message, code=1)
        self.pid, self.command, self.since = pid, command, since


def _check_dir(path: str, st: os.stat_result, what: str) -> None:
    uid = os.geteuid()
    owner = _user(st.st_uid)
    if st.st_uid not in (uid, 0):
        raise StateDirError(f"aixsmit: state directory {path}: {what} is owned by {owner}, not by "
                            f"{_user(uid)}; refusing to trust it.")
    if st.st_mode & 0o022 and not (what != "it" and st.st_mode & stat.S_ISVTX):
        raise StateDirError(f"aixsmit: state directory {path}: {what} is writable by "
                            f"{'group and others' if st.st_mode & 0o022 == 0o022 else 'group' if st.st_mode & 0o020 else 'others'} "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing to trust it (chmod go-w).")


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_state_dir(path: str) -> None:
    """Raise :class:`StateDirError` unless ``path`` is a directory only its user can change.

    ``path`` itself: not a symlink, a directory, owned by the effective user, mode without
    group/other write. Every directory above it (symlinks resolved): owned by root or the
    effective user, and not writable by group/others unless sticky.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise StateDirError(f"aixsmit: state directory {path}: {exc.strerror}.")
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"aixsmit: state directory {path}: it is a symbolic link; refusing to trust it "
                            "(make it a real directory, mode 0700).")
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"aixsmit: state directory {path}: it is not a directory.")
    if st.st_uid != os.geteuid():
        raise StateDirError(f"aixsmit: state directory {path}: it is owned by {_user(st.st_uid)}, not by "
                            f"{_user(os.geteuid())}; refusing to trust it.")
    _check_dir(path, st, "it")
    _check_parents(path, os.path.dirname(os.path.abspath(path)))


def _check_parents(path: str, parent: str) -> None:
    """The folders above ``path`` both as written and as resolved: a folder someone else may
    change, anywhere on the path as written, could swap a link there for one of theirs."""
    _check_above(path, os.path.normpath(parent))
    _check_above(path, os.path.realpath(parent))


def _check_above(path: str, parent: str) -> None:
    """Every directory from ``parent`` up to ``/``: owned by root or the user, not writable by
    group/others unless sticky. Raises :class:`StateDirError` naming ``path`` and the culprit."""
    while True:
        try:
            pst = os.stat(parent)
        except OSError as exc:
            raise StateDirError(f"aixsmit: state directory {path}: {parent}: {exc.strerror}.")
        _check_dir(path, pst, f"the directory above it, {parent},")
        if parent == "/":
            break
        parent = os.path.dirname(parent)


def state_path() -> str:
    """The state directory (``AIXSMIT_STATE_DIR`` overrides ``/var/lib/aixsmit``), created 0700
    when missing, then checked (:func:`check_state_dir`). Raises :class:`StateDirError`."""
    path = os.path.abspath(os.environ.get("AIXSMIT_STATE_DIR") or DEFAULT_STATE_DIR)
    if not os.path.lexists(path):
        # Refuse before creating anything: a directory made under a parent others can write
        # could be swapped for theirs the moment after.
        above = os.path.dirname(path)
        while not os.path.lexists(above):
            above = os.path.dirname(above)
        _check_parents(path, above)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"aixsmit: state directory {path}: cannot be created: {exc.strerror}.")
    except OSError as exc:
        raise StateDirError(f"aixsmit: state directory {path}: cannot be created: {exc.strerror}.")
    check_state_dir(path)
    return path


def state_dir():
    """state_path() as a pathlib.Path."""
    from pathlib import Path

    return Path(state_path())


# --- the one lock ---------------------------------------------------------------------------

_held = threading.local()  # per thread: how deep this thread is in mount_lock
_proc_lock = threading.Lock()  # one thread of this process at a time holds the flock
_lock_fd = -1


def lock_held() -> bool:
    """Whether this thread holds the mount lock (the ledger refuses to change without it)."""
    return getattr(_held, "depth", 0) > 0


@contextmanager
def mount_lock(who: str, wait: float | None = 0) -> Iterator[None]:
    """Hold the one lock of everything that unmounts or mounts again, for the ``with`` body.

    ``who`` names the caller in messages and in the lock file (``"umount"``, ``"sysbackup"``,
    ``"schedule weekly"``). ``wait`` is how many seconds to wait for a busy lock: 0 (default)
    fails at once, ``None`` waits for ever. Re-entrant within one thread (sysbackup holds it
    and calls umount and mount); another thread of the same process waits or fails like another
    process. The file descriptor is close-on-exec: mount helpers and daemons never inherit it.

    Raises :class:`LockBusy` (naming the holder's pid, command and start time) when the lock
    stays taken, :class:`StateDirError` when the state directory is unsafe or unusable.
    """
    global _lock_fd
    if lock_held():
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    import fcntl

    deadline = None if wait is None else time.monotonic() + wait
    if not _proc_lock.acquire(timeout=-1 if wait is None else max(0.0, wait)):
        raise _busy(who, os.getpid(), None)
    try:
        path = os.path.join(state_path(), LOCK_NAME)
        fd = _open_lock(path)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _busy(who, 0, fd) from None
                    time.sleep(0.1)
            _note_holder(fd, who)
            _lock_fd = fd
            _held.depth = 1
            try:
                yield
            finally:
                _held.depth = 0
                _lock_fd = -1
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
    finally:
        _proc_lock.release()


def check_lock(who: str = "aixsmit") -> None:
    """Make sure the flock this thread holds is still on the state directory's ``mount.lock``.

    Removing or replacing the state directory under a running process leaves its flock on a
    deleted file: another process would lock the new ``mount.lock`` and both would change
    mounts and the ledger at once. So, when ``fstat`` of the held descriptor and ``lstat`` of
    STATE/mount.lock differ, the lock is taken again on the new file (the directory recreated
    and checked) at once, without waiting; when another process holds it already, raises
    :class:`LockBusy` naming it. Raises :class:`StateDirError` when the directory is unusable.
    A no-op when this thread holds no lock.
    """
    global _lock_fd
    if not lock_held() or _lock_fd < 0:
        return
    import fcntl

    path = os.path.join(os.path.abspath(os.environ.get("AIXSMIT_STATE_DIR") or DEFAULT_STATE_DIR), LOCK_NAME)
    held = os.fstat(_lock_fd)
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return
    except OSError:
        pass
    path = os.path.join(state_path(), LOCK_NAME)
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command, since = _holder(fd)
            raise LockBusy(f"{who}: the state directory {os.path.dirname(path)} was replaced while this run held "
                           f"the mount lock, and {_holder_text(pid, command, since)} holds the new one; stopping here.",
                           pid=pid, command=command, since=since) from None
        _note_holder(fd, who)
        os.dup2(fd, _lock_fd)  # the held number now refers to the new lock (the old file's is let go)
    finally:
        os.close(fd)


def _open_lock(path: str) -> int:
    from .safefile import open_own

    try:
        return open_own(path, os.O_RDWR)
    except OSError as exc:
        first = exc
    if first.errno in (errno.ELOOP, errno.EPERM):
        raise StateDirError(f"aixsmit: {path}: the mount lock cannot be opened: {first.strerror}.") from None
    try:
        # A read-only or full state directory: an existing lock file still locks (flock needs no
        # write access); what is then refused is writing the ledger, with its own message.
        return open_own(path, os.O_RDONLY, create=False)
    except OSError:
        raise StateDirError(f"aixsmit: {path}: the mount lock cannot be opened: {first.strerror}.") from None


def _note_holder(fd: int, who: str) -> None:
    """Write who holds the lock into the lock file, for the message another process shows.
    Best effort: a full or read-only state directory must not stop the run, and
    :func:`_holder` falls back on /proc/locks."""
    line = f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {who}\n".encode("utf-8", "replace")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
    except OSError:
        pass


def _holder(fd: int) -> tuple[int, str, str]:
    """(pid, command, since) of the process holding the flock on ``fd``'s file."""
    st = os.fstat(fd)
    pid = 0
    try:
        with open("/proc/locks") as f:
            key = f":{st.st_ino}"
            dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}{key}"
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; a "->" line waits for one.
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == dev:
                    pid = int(parts[4])
                    break
    except (OSError, ValueError):
        pass
    since, command = "", ""
    try:
        noted = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip().split(" ", 2)
        if len(noted) == 3 and noted[0].isdigit() and (pid == 0 or int(noted[0]) == pid):
            pid, since, command = int(noted[0]), noted[1], "aixsmit " + noted[2]
    except OSError:
        pass
    if pid and not command:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = " ".join(os.fsdecode(a) for a in f.read().split(b"\0") if a)[:120]
        except OSError:
            command = "?"
    return pid, command, since


def _holder_text(pid: int, command: str, since: str) -> str:
    holder = f"pid {pid}" if pid else "another process"
    if command:
        holder += f", {command}"
    if since:
        holder += f", since {since}"
    return holder


def _busy(who: str, pid: int, fd: int | None) -> LockBusy:
    if fd is not None:
        pid, command, since = _holder(fd)
    else:
        command, since = "another thread of this process", ""
    holder = _holder_text(pid, command, since)
    return LockBusy(f"{who}: another aixsmit run is unmounting or mounting file systems ({holder}); "
                    "try again when it has finished.", pid=pid, command=command, since=since)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: :func:`aixsmit.safefile.write_file` (a new file, ``mode``
    whatever the umask, renamed over ``path`` only while it is the file created; a link or
    another user's file at ``path`` is replaced, never written through). A reader sees the old
    content or the new one. With ``sync=False`` (state that is only informative) nothing waits
    for the disk."""
    from .safefile import write_file

    write_file(os.fspath(path), data, mode, sync=sync)


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
