"""Paths inside a target tree, resolved as if the target were ``/``: never through a link out of it.

A restored system image is untrusted data: its ``./etc`` may be a symbolic link to the host's
``/etc``, its ``./etc/fstab`` a link to ``/etc/shadow``. Every file aixsmit writes or edits in
such a tree goes through these helpers, which resolve the path with ``openat2(2)`` and
``RESOLVE_IN_ROOT`` (Linux 5.6+): ``..`` stops at the target, an absolute link starts again at
the target. Where ``openat2`` is missing (an older kernel, another system) the same resolution
is done one component at a time with ``O_NOFOLLOW`` (an equivalent walk: links are read and
resolved inside the target, never followed by the kernel).

Errors are ``OSError`` as ``open`` raises them; a link loop is ``ELOOP``.
"""

from __future__ import annotations

import errno
import os
import stat

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (the unified syscall table)
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
READ_LIMIT = 4 << 20  # the files clone edits are small text files; a bigger one is refused

_openat2 = None  # the libc syscall() function, or False once found missing


def _syscall():
    global _openat2
    if _openat2 is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.syscall
            fn.restype = ctypes.c_long
            _openat2 = fn
        except (OSError, AttributeError):
            _openat2 = False
    return _openat2


def _kernel_openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int | None:
    """The fd, or None when this system has no openat2 (the caller walks instead)."""
    fn = _syscall()
    if not fn or not hasattr(os, "O_PATH"):
        return None
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    how = OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = fn(_SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and resolve & RESOLVE_IN_ROOT:
        return None  # no openat2 here, or a seccomp filter refusing it: walk instead
    raise OSError(err, os.strerror(err), path)


def _walk(rootfd: int, path: str, flags: int, mode: int, follow_links: bool) -> int:
    """Resolve ``path`` below ``rootfd`` one component at a time, as RESOLVE_IN_ROOT does.

    Links met on the way are read and resolved inside the root (or refused when not
    ``follow_links``); the kernel never follows one. The last component is opened with
    O_NOFOLLOW after its links were resolved the same way.
    """
    todo = [c for c in path.split("/") if c not in ("", ".")]
    done: list[str] = []  # real directories below the root, no links among them
    links = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        parent = os.open("/".join(done) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rootfd) \
            if done else os.dup(rootfd)
        try:
            try:
                st = os.lstat(name, dir_fd=parent)
            except FileNotFoundError:
                if todo or not flags & os.O_CREAT:
                    raise
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
            if stat.S_ISLNK(st.st_mode) and (todo or follow_links):
                if not follow_links:
                    raise OSError(errno.ELOOP, "a symbolic link on the way", path)
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                todo = [c for c in target.split("/") if c not in ("", ".")] + todo
                continue
            if not todo:
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            done.append(name)
        finally:
            os.close(parent)
    return os.open("/".join(done) or ".", flags | os.O_CLOEXEC, mode, dir_fd=rootfd)


def open_in(root: str, path: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow_links: bool = True) -> int:
    """Open ``path`` (absolute or not: it is taken inside ``root``) resolved inside ``root``.

    ``follow_links=False`` refuses any symbolic link on the way (ELOOP): for directories that
    something is about to be mounted on. Returns a file descriptor (close it).
    """
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rel = path.lstrip("/") or "."
        resolve = RESOLVE_NO_MAGICLINKS | (RESOLVE_IN_ROOT if follow_links else RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
        fd = _kernel_openat2(rootfd, rel, flags, mode, resolve)
        if fd is None:
            fd = _walk(rootfd, rel, flags, mode, follow_links)
        return fd
    finally:
        os.close(rootfd)


def read_in(root: str, path: str, limit: int = READ_LIMIT) -> bytes | None:
    """The content of a regular file inside ``root``; None when it does not exist."""
    try:
        fd = open_in(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MB", path)
    return data


def write_in(root: str, path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace (or create) the file ``path`` inside ``root`` with ``data``.

    :class:`aixsmit.safefile.OutputFile` in the (resolved) directory, held open: a new file made
    with O_EXCL|O_NOFOLLOW, synced, renamed over the old name only while it is still the file
    made: a link there is replaced, never written through. An existing regular file's mode and
    owner are kept (not those of a link or anything else found at the name).
    """
    from .safefile import OutputFile

    parent, _, name = path.strip("/").rpartition("/")
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, "not a file name", path)
    dfd = open_in(root, parent or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            old = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            old = None
        with OutputFile(name, marker=".aixsmit-new-", mode=mode, dir_fd=dfd) as out:
            out.write(data)
            if old is not None and stat.S_ISREG(old.st_mode):
                os.fchown(out.fd, old.st_uid, old.st_gid)
                os.fchmod(out.fd, stat.S_IMODE(old.st_mode))
            out.commit()
    finally:
        os.close(dfd)


def remove_in(root: str, path: str) -> bool:
    """Remove the file (or link) ``path`` inside ``root``; False when there was none."""
    parent, _, name = path.strip("/").rpartition("/")
    try:
        dfd = open_in(root, parent or ".", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


def makedirs_in(root: str, path: str, mode: int = 0o755) -> None:
    """Make the directory ``path`` and its missing parents inside ``root``."""
    done = ""
    for part in [c for c in path.split("/") if c not in ("", ".")]:
        done = f"{done}/{part}"
        try:
            os.close(open_in(root, done, os.O_RDONLY | os.O_DIRECTORY))
        except FileNotFoundError:
            parent, _, name = done.strip("/").rpartition("/")
            dfd = open_in(root, parent or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.mkdir(name, mode, dir_fd=dfd)
            except FileExistsError:
                # Made meanwhile, or a link whose target is missing inside the root (then
                # nothing is made through it: mkdir -p refuses it too).
                try:
                    os.close(open_in(root, done, os.O_RDONLY | os.O_DIRECTORY))
                except FileNotFoundError:
                    raise OSError(errno.ENOENT, "a symbolic link to nothing inside the root", done) from None
            finally:
                os.close(dfd)


def real_dir(root: str, path: str) -> str:
    """``root/path`` after checking it is a directory reached through no symbolic link at all.

    For mount points (a mount follows links in its target path): what is returned is the
    directory checked. OSError ELOOP when a link is on the way, ENOTDIR/ENOENT as usual.
    """
    fd = open_in(root, path, os.O_RDONLY | os.O_DIRECTORY, follow_links=False)
    os.close(fd)
    return os.path.join(root, path.strip("/")) if path.strip("/") else root
