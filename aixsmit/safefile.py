"""The one way aixsmit creates the files it writes, and reads the files it is given.

aixsmit runs as root and writes into folders other users may write too (a shared backup
folder). Whatever name it means to write, another user may have put there first: a symbolic
link to ``/etc/shadow``, their own file, a link to a disk. So:

* an output file is always a *new* file, created here with ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode
  0600, under a random temporary name, through a descriptor of its folder (``OutputFile``);
  programs that fill it (tar) get that descriptor, never the name;
* it is renamed over the final name only when complete, and only when the temporary name is
  still the file created here (device and inode compared before and after); a name planted
  at the final name is replaced, never written through;
* "device or file" is decided with ``lstat`` (``destination_kind``): a device is written in
  place only when it is named by a path no other user can change (every folder on the way
  owned by root and writable by nobody else, or sticky), so a planted link to a disk is
  just a name to replace;
* small files (state, ledger records, files edited in a target tree) are written the same way,
  whole (``write_file``), also relative to a folder held open (``dir_fd``), synced or not;
* a log that is appended to is opened only when it is a regular file of this user with one
  name, or created new (``open_own``): a link or another user's file in its place is refused;
* folders aixsmit creates are 0700 (``make_private_dirs``);
* every input file is read up to a stated bound, with a one-line error past it
  (``read_bounded``): ``/dev/zero`` given as a configuration or a mount table is refused
  after a few megabytes, not read until the machine runs out of memory.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import AixsmitError

FILE_MODE = 0o600
DIR_MODE = 0o700

# Bounds for what aixsmit reads (bytes). Real files are a few kilobytes; a table of contents
# holds one record per file of a volume group (a few million files: well under 1 GB).
CONFIG_LIMIT = 1 << 20
MOUNT_TABLE_LIMIT = 16 << 20
INFO_FILE_LIMIT = 4 << 20  # image.data, VG.data, fstab, map files
TOC_LIMIT = 1 << 30
STATE_FILE_LIMIT = 16 << 20  # ledger, dumpdates, logs read back


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (a file, a FIFO, a device: read as a stream) up to ``limit``.
    Raises AixsmitError naming ``path`` and ``what`` when it holds more, or cannot be read;
    FileNotFoundError is passed on, for callers to whom a missing file means defaults."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise AixsmitError(f"{path}: cannot read the {what}: {exc.strerror}")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise AixsmitError(f"{path}: is a directory, not a {what}")
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            os.set_blocking(fd, True)
        return read_fd_bounded(fd, limit, f"{path}: the {what}")
    finally:
        os.close(fd)


def read_fd_bounded(fd: int, limit: int, what: str) -> bytes:
    """Read ``fd`` to its end, at most ``limit`` bytes; AixsmitError("WHAT is larger than …")
    past that."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise AixsmitError(f"{what} is larger than {_human(limit)}: refused (is it the right file?)")
    except OSError as exc:
        raise AixsmitError(f"{what} cannot be read: {exc.strerror}")
    return b"".join(chunks)


def _human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}"
    return f"{n} bytes"


# --- where a path leads ----------------------------------------------------------------------

def trusted_folder(path: str) -> bool:
    """True when no user but root (or this process's own user) can change what the names in
    folder ``path`` lead to: every folder from / down to it is owned by one of them and is not
    writable by group or others, unless sticky (as /tmp: others cannot rename or remove what
    they do not own)."""
    me = os.geteuid()
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i in range(len(parts) + 1):
        try:
            st = os.lstat(cur)
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode):
            # A link on the way is followed only if it too sits in a trusted folder (it does: we
            # checked its parent) and is owned by a trusted user.
            if st.st_uid not in (0, me):
                return False
            return trusted_folder(os.path.realpath(cur)) and _rest_trusted(os.path.realpath(cur), parts[i:])
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, me):
            return False
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return False
        if i < len(parts):
            cur = os.path.join(cur, parts[i])
    return True


def _rest_trusted(base: str, rest: list[str]) -> bool:
    return trusted_folder(os.path.join(base, *rest)) if rest else True


def destination_kind(path: str, program: str) -> str:
    """``"device"`` or ``"file"``: how an image is written to ``path``. Decided by ``lstat``:

    * a character or block device in a trusted folder, or a link in a trusted folder (such as
      ``/dev/tape``) that leads to one: the device, written in place;
    * nothing there, a regular file, or a link in a folder others can write (wherever it
      leads): a file, created new and renamed over the name (a link is replaced, never
      followed).

    Raises AixsmitError (0512-017, one line) for a folder, a FIFO, a socket, a device in a folder
    others can write, or a missing folder."""
    folder = os.path.dirname(path) or "/"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise AixsmitError(f"0512-017 {program}: Cannot write to {path}: {exc.strerror}.")
    cant = f"0512-017 {program}: Cannot write to the device {path}:"
    if st is None or stat.S_ISREG(st.st_mode):
        kind = "file"
    elif stat.S_ISLNK(st.st_mode):
        kind = "file"
        if trusted_folder(folder) and st.st_uid == 0:
            try:
                target = os.stat(path)
            except OSError:
                target = None
            if target is not None and (stat.S_ISCHR(target.st_mode) or stat.S_ISBLK(target.st_mode)):
                if not trusted_folder(os.path.dirname(os.path.realpath(path))):
                    raise AixsmitError(f"{cant} it leads to a device in a folder other users can write.")
                kind = "device"
            elif target is not None and stat.S_ISDIR(target.st_mode):
                raise AixsmitError(f"{cant} it is a folder; name a file in it, such as {path}/rootvg.mksysb.")
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if not trusted_folder(folder):
            raise AixsmitError(f"{cant} a device in a folder other users can write ({folder}); "
                               "name it by a path only root can change, such as /dev/…")
        kind = "device"
    elif stat.S_ISDIR(st.st_mode):
        raise AixsmitError(f"{cant} it is a folder; name a file in it, such as {path.rstrip('/')}/rootvg.mksysb.")
    else:
        what = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket"
        raise AixsmitError(f"{cant} it is {what}, neither a file nor a tape or disk.")
    if kind == "file":
        try:
            fst = os.stat(folder)
        except OSError:
            fst = None
        if fst is None or not stat.S_ISDIR(fst.st_mode):
            raise AixsmitError(f"{cant} the folder {folder} does not exist.")
    return kind


# --- creating files ----------------------------------------------------------------------------

def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


class OutputFile:
    """A new file that will be published at ``final`` when complete.

    ``fd`` is open read-write on a file created here (O_EXCL|O_NOFOLLOW, ``mode``), named
    ``.BASENAME<marker>PID-RANDOM`` in ``final``'s folder, held by a descriptor of that folder.
    Hand ``fd`` to whatever fills it (``child_path`` names it for a child process that got it
    through ``pass_fds``). ``commit()`` syncs it, renames it over ``final`` and syncs the folder;
    ``discard()`` removes it. Either only ever acts on the file this object created."""

    def __init__(self, final: str, marker: str = ".aixsmit-partial-", mode: int = FILE_MODE, *,
                 dir_fd: int | None = None):
        """``dir_fd``: ``final`` is a name in the folder open as that descriptor (one resolved
        with care, as inside a target tree); the descriptor is duplicated, the caller keeps it."""
        self.dir_fd = self.fd = -1
        if dir_fd is None:
            self.final = os.path.abspath(final)
            self.folder = os.path.dirname(self.final)
            self.base = os.path.basename(self.final)
            self.dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            if not final or "/" in final or final in (".", ".."):
                raise OSError(errno.EINVAL, "not a file name", final)
            try:
                self.folder = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                self.folder = f"(folder fd {dir_fd})"
            self.base = final
            self.final = os.path.join(self.folder, final)
            self.dir_fd = os.dup(dir_fd)
            os.set_inheritable(self.dir_fd, False)
        try:
            for _ in range(100):
                self.name = f".{self.base}{marker}{os.getpid()}-{os.urandom(4).hex()}"
                try:
                    self.fd = os.open(self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      mode, dir_fd=self.dir_fd)
                    break
                except FileExistsError:
                    continue
            if self.fd < 0:
                raise FileExistsError(errno.EEXIST, "no free temporary name", self.folder)
            os.fchmod(self.fd, mode)  # whatever the umask
            self.stat = os.fstat(self.fd)
        except BaseException:
            self.close()
            raise
        self.done = False

    def write(self, data: bytes) -> None:
        """Write all of ``data`` at the current offset."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    @property
    def temp_path(self) -> str:
        return os.path.join(self.folder, self.name)

    @property
    def child_path(self) -> str:
        """The file, for a child process given ``fd`` (``pass_fds``): opening it opens this inode,
        whatever happens to the names in the folder meanwhile."""
        return f"/dev/fd/{self.fd}"

    def _ours(self, name: str) -> bool:
        try:
            return _same(os.lstat(name, dir_fd=self.dir_fd), self.stat)
        except OSError:
            return False

    def commit(self, sync: bool = True) -> None:
        """Sync the data, rename over ``final``, sync the folder (``sync=False``: no waiting for
        the disk, for state that is only informative). Raises AixsmitError when the temporary
        name no longer holds the file created here (someone renamed it away)."""
        if sync:
            os.fsync(self.fd)
        if not self._ours(self.name):
            raise AixsmitError(f"{self.temp_path}: the file being written was moved or replaced by someone else; "
                               "nothing was published")
        os.rename(self.name, self.base, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        if not self._ours(self.base):
            # Swapped between the check and the rename: what we published is not ours.
            try:
                os.unlink(self.base, dir_fd=self.dir_fd)
            except OSError:
                pass
            raise AixsmitError(f"{self.final}: the file was replaced by someone else while it was being "
                               "published; the name was removed")
        if sync:
            os.fsync(self.dir_fd)
        self.done = True

    def discard(self) -> None:
        if not self.done and self.dir_fd >= 0 and self._ours(self.name):
            try:
                os.unlink(self.name, dir_fd=self.dir_fd)
            except OSError:
                pass
        self.done = True

    def close(self) -> None:
        for attr in ("fd", "dir_fd"):
            fd = getattr(self, attr, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
        self.close()


def write_file(path: str, data: bytes, mode: int = FILE_MODE, *, sync: bool = True, dir_fd: int | None = None) -> None:
    """Replace ``path`` with a new file holding ``data`` (created, synced, renamed as above:
    a link, a hard link or another user's file at ``path`` is replaced, never written through).
    ``dir_fd``: ``path`` is a name in the folder open as that descriptor. ``sync=False``: no
    fsync (the rename still makes the change whole for a reader). Raises OSError, or
    AixsmitError when the new file was moved away before it was published."""
    with OutputFile(path, marker=".aixsmit-new-", mode=mode, dir_fd=dir_fd) as out:
        out.write(data)
        out.commit(sync)


def open_own(path: str, flags: int = os.O_WRONLY | os.O_APPEND, mode: int = FILE_MODE, create: bool = True) -> int:
    """A descriptor (close-on-exec) of ``path`` for a file kept and added to (a log, a lock):
    created new (O_EXCL|O_NOFOLLOW, ``mode`` whatever the umask) when nothing is there (and
    ``create``), else opened only when it is a regular file of this user with no other name
    (O_NOFOLLOW: a symbolic link is refused; a hard link to another file, another user's file,
    a FIFO or a device are refused after ``fstat``, before anything is written). Raises
    OSError (ELOOP for a link, EPERM for the rest, naming ``path``)."""
    flags = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)) | os.O_NOFOLLOW | os.O_CLOEXEC
    if create:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            pass
        else:
            os.fchmod(fd, mode)
            return fd
    fd = os.open(path, flags | os.O_NONBLOCK)  # a FIFO planted there must not hang the open
    try:
        st = os.fstat(fd)
        why = ("not a regular file" if not stat.S_ISREG(st.st_mode) else
               f"owned by uid {st.st_uid}, not by this user" if st.st_uid != os.geteuid() else
               f"it has {st.st_nlink} names (a hard link)" if st.st_nlink != 1 else "")
        if why:
            raise OSError(errno.EPERM, f"{why}; refusing to write to it", path)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def create_new(path: str, mode: int = FILE_MODE) -> int:
    """A descriptor open for writing on a file created at ``path`` now (O_EXCL|O_NOFOLLOW):
    for work files in a private folder. FileExistsError if anything is there."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    os.fchmod(fd, mode)
    return fd


def make_private_dirs(path: str, mode: int = DIR_MODE) -> None:
    """Create ``path`` and any missing folders above it with ``mode`` (0700), whatever the
    umask. Folders that exist are left as they are, but must be folders (a link to one is
    refused when it sits in a folder others can write)."""
    path = os.path.abspath(path)
    missing = []
    cur = path
    while True:
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            missing.append(cur)
            cur = os.path.dirname(cur)
            continue
        if stat.S_ISLNK(st.st_mode) and not trusted_folder(os.path.dirname(cur)):
            raise AixsmitError(f"{cur}: a symbolic link in a folder other users can write; refused")
        if not os.path.isdir(cur):
            raise AixsmitError(f"{cur}: not a folder")
        break
    for d in reversed(missing):
        os.mkdir(d, mode)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, mode)  # whatever the umask took away
        finally:
            os.close(fd)
