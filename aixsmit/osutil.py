"""Small file and path helpers with nothing but ``os`` behind them.

The commands an operator times (``aixsmit cmd mksysb`` above all) start a new interpreter each
run; ``shutil``, ``tempfile`` and ``pathlib`` cost several milliseconds of imports between them
(shutil alone loads bz2 and lzma), for the few calls below.
"""

from __future__ import annotations

import os
import signal

_which_cache: dict[tuple[str, str], str | None] = {}


def which(name: str) -> str | None:
    """The program ``name`` on PATH, like shutil.which (looked up once per PATH)."""
    search = os.environ.get("PATH", os.defpath)
    key = (name, search)
    if key in _which_cache:
        return _which_cache[key]
    found = None
    for d in search.split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            found = path
            break
    _which_cache[key] = found
    return found


def die_with_parent() -> None:
    """In a child: get SIGKILL if the parent dies, so no orphan goes on (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_setpriv: str | None | bool = False  # not looked for yet


def orphan_proof(argv: list[str]) -> tuple[list[str], object]:
    """``(argv, preexec_fn)`` for a child that gets SIGKILL if this process dies.

    util-linux's ``setpriv --pdeathsig KILL`` sets that and runs the command in the same
    process: then Popen needs no preexec_fn and can use vfork, which starts the child in
    0.5 ms instead of 3-7 ms (a fork of the whole interpreter, and ctypes imported in the
    child). Without setpriv, the same is done by ``die_with_parent`` in the child."""
    global _setpriv
    if _setpriv is False:
        _setpriv = which("setpriv")
    if _setpriv:
        return [_setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), die_with_parent


def grow_pipe(fd: int, sizes: tuple[int, ...] = (1 << 20,)) -> int:
    """Give a pipe more room: the first of ``sizes`` the kernel grants (root may go past the
    1 MB a user may ask for). Returns the pipe's size then; 64 KB, Linux's default, where none
    is granted or the system has no F_SETPIPE_SZ (AIX)."""
    import fcntl

    op = getattr(fcntl, "F_SETPIPE_SZ", None)
    if op is not None:
        for size in sizes:
            try:
                return fcntl.fcntl(fd, op, size)
            except OSError:
                continue
    return 1 << 16


def make_temp_dir(prefix: str) -> str:
    """A new directory, mode 0700, in $TMPDIR or /tmp (as tempfile.mkdtemp)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_tree(path: str) -> None:
    """Remove a directory and everything in it; what cannot be removed is left (as
    shutil.rmtree(ignore_errors=True)). Symbolic links are removed, never followed."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for ent in entries:
        try:
            if ent.is_dir(follow_symlinks=False):
                remove_tree(ent.path)
            else:
                os.unlink(ent.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def copy_file(src: str, dst: str, mode: int = 0o600) -> None:
    """Copy a regular file's content (as shutil.copyfile), in the kernel where it can, into a
    new file published at ``dst`` as :class:`aixsmit.safefile.OutputFile` does (a link at
    ``dst`` is replaced, never written through); not synced."""
    from .safefile import OutputFile

    with open(src, "rb") as fin, OutputFile(dst, marker=".aixsmit-new-", mode=mode) as out:
        st = os.fstat(fin.fileno())
        size = st.st_size if st.st_mode & 0o170000 == 0o100000 else 0  # (no stat import: start-up)
        done = 0
        try:
            while done < size:
                n = os.sendfile(out.fd, fin.fileno(), done, size - done)
                if n == 0:
                    break
                done += n
        except OSError:
            done = size = 0
            os.ftruncate(out.fd, 0)
            os.lseek(out.fd, 0, os.SEEK_SET)
        if done == 0 and size == 0:
            while chunk := fin.read(1 << 20):
                out.write(chunk)
        out.commit(sync=False)


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    """A small file of work (in a private folder), as :func:`aixsmit.safefile.write_file` writes
    it: new, renamed over ``path``; not synced."""
    from .safefile import write_file

    write_file(path, text.encode(), mode, sync=False)
