"""Linux: mountinfo, util-linux ``umount``/``mount``, a /proc holder scan."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ..fs.mounts import Mount, read_mountinfo
from .common import Result, run

TYPE_CHECKING = False  # (typing costs start-up time)
if TYPE_CHECKING:
    from ..fs.holders import Holder
    from ..fs.ledger import Identity


class LinuxHost:
    name = "linux"

    def __init__(self, mountinfo: str = "/proc/self/mountinfo", proc: str = "/proc"):
        self.mountinfo = mountinfo
        self.proc = proc

    def mounts(self) -> list[Mount]:
        return read_mountinfo(self.mountinfo)

    def holders(self, targets: Sequence[Mount], all_mounts: Iterable[Mount]) -> list[Holder]:
        from ..fs import holders as _holders

        targets = list(targets)
        return _holders.scan_linux(targets, all_mounts, self.proc) + _holders.kernel_holders(targets)

    def umount_argv(self, mount: Mount, force: bool = False) -> list[str]:
        # Never lazy (-l): a lazily detached file system is still in use, only invisible.
        return ["umount", *(["-f"] if force else []), "--", mount.path]

    def umount(self, mount: Mount, force: bool = False) -> Result:
        return run(self.umount_argv(mount, force))

    @staticmethod
    def is_busy(result: Result) -> bool:
        return result.rc == 32 and "busy" in (result.stderr + result.stdout)

    def device_facts(self, mount: Mount) -> dict:
        """What identifies ``mount``'s file system across reboots and loop numbers: a loop
        device's backing file, offset, size limit and autoclear flag; otherwise the UUID."""
        dev = mount.device
        if not dev.startswith("/dev/"):
            return {}
        # The UUID always, where the file system has one (also on a loop device: its backing
        # file names where it lies, the UUID which file system it is — a file copied over the
        # image keeps the name and is another file system).
        facts = dict(loop_info(dev))
        uuid = device_uuid(dev)
        if uuid:
            facts["uuid"] = uuid
        return facts

    def identity(self, mount: Mount) -> Identity:
        """The one identity of what ``mount`` mounts (:class:`~aixsmit.fs.ledger.Identity`: its
        UUID, and a loop device's backing file and offset), as a ledger record holds it and as
        the stack below a record is stored."""
        from ..fs.ledger import Identity

        return Identity.of(self.device_facts(mount), mount.device)

    def holds(self, ident: Identity, mount: Mount) -> bool:
        """Whether ``mount`` mounts the file system ``ident`` names, whatever its device is called
        now: the same loop backing file and offset when one is recorded, the same UUID when one
        is recorded (both when both are), else the same source. The only comparison of
        identities: a record's own mount and the stack below it are recognised alike."""
        if ident.backing_file:
            loop = loop_info(mount.device) if mount.device.startswith("/dev/") else {}
            if not (loop and _same_file(loop["backing_file"], ident.backing_file) and loop["offset"] == ident.offset):
                return False
        if ident.uuid:
            # The UUID, probed now: the recorded device name may hold another file system by now.
            return mount.device.startswith("/dev/") and device_uuid(mount.device) == ident.uuid
        return bool(ident.backing_file) or mount.device == ident.source

    def mount(self, rec) -> Result:
        """:meth:`_mount`, then the recorded propagation set again (a new mount takes its
        parent's: shared under a shared parent, private otherwise)."""
        res = self._mount(rec)
        if res.rc != 0 or not getattr(rec, "propagation", ""):
            return res
        flags = rec.propagation.split(",")
        if "unbindable" in flags:
            steps = ["--make-unbindable"]
        elif "slave" in flags:  # a slave of the peers it joined (a bind of a shared mount joins them)
            steps = ["--make-slave"] + (["--make-shared"] if "shared" in flags else [])
        else:
            steps = [f"--make-{flags[0]}"]
        for step in steps:
            done = run(["mount", step, "--", rec.path])
            if done.rc != 0:
                return Result(done.argv, done.rc, done.stdout, f"mounted, but its propagation ({rec.propagation}) "
                              f"could not be set again: {done.message}")
        return res

    def _mount(self, rec) -> Result:
        """Mount ledger record ``rec`` again at ``rec.path``: the same source (found again by
        loop backing file or UUID), type, FSROOT and options; a bind mount (FSROOT not the
        device's natural root) is bound from a mount of the same file system, or from a private
        temporary mount of the device."""
        source, extra, res = self.source_of(rec)
        if res is not None:
            return res
        res = self._same_file_system(rec, source, extra)
        if res is not None:
            return res
        opts = ",".join(extra + list(rec.options))
        try:
            target = _open_no_links(rec.root, rec.path)
        except OSError as exc:
            return Result(("mount", rec.path), 32, "", f"the mount point {_reason(exc)}; it stays in the ledger")
        try:
            return self._mount_at(rec, source, opts, target)
        finally:
            os.close(target)

    def _mount_at(self, rec, source: str, opts: str, target: int) -> Result:
        """Mount ``rec`` on the directory open as O_PATH fd ``target`` (mount -c of
        /proc/self/fd/N: the kernel mounts on that very directory, no path is looked up again)."""
        at = f"/proc/self/fd/{target}"
        if not rec.is_bind:
            return run(["mount", "-c", "-t", rec.vfs, *(["-o", opts] if opts else []), "--", source, at],
                       pass_fds=(target,))
        from ..fs.ledger import natural_root

        base = natural_root(rec.vfs, rec.fs_options).rstrip("/")
        sub = rec.fs_root[len(base):] if rec.fs_root.startswith(base + "/") else rec.fs_root
        tmp = ""
        src = _visible_mount_of(self.mounts(), source, rec.vfs, base or "/")
        if src is None:
            import tempfile

            tmp = tempfile.mkdtemp(prefix="aixsmit-bind-")  # 0700, root's: nobody else reaches it
            res = run(["mount", "-t", rec.vfs, *(["-o", opts] if opts else []), "--", source, tmp])
            if res.rc != 0:
                os.rmdir(tmp)
                return res
            src = tmp
        try:
            try:
                # The sub-path lies in user data: no link on the way (a recorded FSROOT has none).
                sfd = _open_no_links(src, sub)
            except OSError as exc:
                res = Result(("mount", "--bind"), 32, "", f"the bind source {sub} {_reason(exc)}; it stays in the ledger")
            else:
                try:
                    res = run(["mount", "-c", "--bind", "--", f"/proc/self/fd/{sfd}", at], pass_fds=(sfd, target))
                finally:
                    os.close(sfd)
        finally:
            if tmp:
                run(["umount", "--", tmp])
                try:
                    os.rmdir(tmp)
                except OSError:
                    pass
        if res.rc == 0 and rec.vfs_options:
            # A bind takes the source's per-mount flags: set the recorded ones (ro, nosuid, ...).
            res2 = run(["mount", "-o", "remount,bind," + ",".join(rec.vfs_options), "--", rec.path])
            if res2.rc != 0:
                return res2
        return res

    def _same_file_system(self, rec, source: str, extra: list[str]) -> Result | None:
        """None when ``source`` holds the file system ``rec`` recorded (its UUID, when one was
        recorded); else a failed Result naming both UUIDs, with a loop device attached for the
        purpose detached again. Nothing is mounted in place of a different file system."""
        if not rec.uuid:
            return None
        if extra:  # mount -o loop,offset=...: probe the file at the offset, as mount will read it
            found = file_uuid(source, rec.offset, rec.sizelimit)
        else:
            found = device_uuid(source)
        if found == rec.uuid:
            return None
        if source.startswith("/dev/loop") and rec.backing_file and source not in self._attached_before:
            run(["losetup", "-d", source])
        return Result(("blkid", source), 32, "",
                      f"{source} holds {'UUID=' + found if found else 'no file system UUID'}, not the file system "
                      f"UUID={rec.uuid} that was unmounted; a different file system is not mounted in its place")

    _attached_before: frozenset[str] = frozenset()

    def source_of(self, rec) -> tuple[str, list[str], Result | None]:
        """(device to mount, extra -o options, or a failed Result): the recorded file system as
        it is known now — its loop device (attached again on the recorded number when that is
        free), or the device holding its UUID."""
        if rec.backing_file:
            now = loops_backing(rec.backing_file, rec.offset)
            self._attached_before = frozenset(now)
            if now:
                return (rec.source if rec.source in now else now[0]), [], None
            want = rec.source if rec.source.startswith("/dev/loop") and _loop_free(rec.source) else ""
            if rec.autoclear:
                # As 'mount -o loop' made it: the loop device detaches itself again on unmount.
                extra = [f"loop={want}" if want else "loop"]
                extra += [f"offset={rec.offset}"] if rec.offset else []
                extra += [f"sizelimit={rec.sizelimit}"] if rec.sizelimit else []
                return rec.backing_file, extra, None
            argv = ["losetup", *(["-o", str(rec.offset)] if rec.offset else []),
                    *(["--sizelimit", str(rec.sizelimit)] if rec.sizelimit else [])]
            res = run(argv + ["--show", want or "-f", "--", rec.backing_file])
            if res.rc != 0 and want:
                res = run(argv + ["--show", "-f", "--", rec.backing_file])
            if res.rc != 0:
                return "", [], res
            return res.stdout.strip(), [], None
        if rec.uuid:
            if os.path.exists(rec.source) and device_uuid(rec.source) == rec.uuid:
                return rec.source, [], None
            found = run(["blkid", "-U", rec.uuid], timeout=30)
            if found.rc == 0 and found.stdout.strip():
                return found.stdout.strip(), [], None
            return "", [], Result(("blkid", "-U", rec.uuid), 2, "", f"no device holds the file system UUID={rec.uuid}")
        return rec.source, [], None

    def matches(self, rec, mount: Mount) -> bool:
        """Whether ``mount`` is the file system and subtree ``rec`` records."""
        return mount.vfs == rec.vfs and mount.fs_root == rec.fs_root and self.holds(rec.identity, mount)


def _open_no_links(root: str, path: str) -> int:
    """An O_PATH fd of the directory ``path`` taken inside ``root`` (a host path below ``root``
    is taken relative to it), reached from ``root`` through no symbolic link: mountinfo's paths
    have none, so a link met now was put there since (a mount point in a folder users can
    write, a bind's sub-path in user data). OSError (ELOOP for a link) otherwise."""
    from .. import inroot

    root = root.rstrip("/") or "/"
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return inroot.open_in(root, path, os.O_PATH | os.O_DIRECTORY, follow_links=False)


def _reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "is reached through a symbolic link"
    if exc.errno == errno.ENOTDIR:
        return "is not a directory"
    if exc.errno == errno.ENOENT:
        return "does not exist"
    return f"cannot be opened: {exc.strerror}"


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _same_device(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_rdev == os.stat(b).st_rdev != 0
    except OSError:
        return False


def _visible_mount_of(mounts: list[Mount], device: str, vfs: str, fs_root: str) -> str | None:
    """The path of a mount of ``device`` whose FSROOT is ``fs_root``, not hidden by another."""
    tops: dict[str, Mount] = {}
    for m in mounts:
        tops[m.path] = m
    for m in tops.values():
        if m.vfs == vfs and m.fs_root == fs_root and (m.device == device or _same_device(m.device, device)):
            return m.path
    return None


def loop_info(device: str) -> dict:
    """A loop device's backing file, offset, size limit and autoclear flag ({} for others)."""
    name = os.path.basename(os.path.realpath(device))
    base = f"/sys/block/{name}/loop"
    try:
        with open(f"{base}/backing_file", "rb") as f:
            backing = os.fsdecode(f.read().rstrip(b"\n"))
    except OSError:
        return {}
    out = {"backing_file": backing.removesuffix(" (deleted)"), "offset": 0, "sizelimit": 0, "autoclear": False}
    for key in ("offset", "sizelimit", "autoclear"):
        try:
            with open(f"{base}/{key}") as f:
                value = int(f.read().strip() or 0)
            out[key] = bool(value) if key == "autoclear" else value
        except (OSError, ValueError):
            pass
    return out


def loops_backing(path: str, offset: int = 0) -> list[str]:
    """Loop devices whose backing file is ``path`` at ``offset``."""
    out = []
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return out
    for name in names:
        if name.startswith("loop"):
            info = loop_info(f"/dev/{name}")
            if info and info["offset"] == offset and _same_file(info["backing_file"], path):
                out.append(f"/dev/{name}")
    return out


def _loop_free(device: str) -> bool:
    return os.path.exists(device) and not loop_info(device)


def loop_backing_file(device: str) -> str:
    """The file behind a loop device ("" for anything else)."""
    return loop_info(device).get("backing_file", "")


def file_uuid(path: str, offset: int = 0, sizelimit: int = 0) -> str:
    """The file system UUID in image file ``path`` at ``offset`` ("" when none is found)."""
    res = run(["blkid", "-p", "-o", "value", "-s", "UUID", *(["-O", str(offset)] if offset else []),
               *(["-S", str(sizelimit)] if sizelimit else []), "--", path], timeout=30)
    return res.stdout.strip() if res.rc == 0 else ""


def device_uuid(device: str) -> str:
    """The file system UUID on ``device``, probed from the device itself (right also just after
    mkfs, when udev's /dev/disk/by-uuid links may still name the old one); the links only when
    blkid cannot read it."""
    res = run(["blkid", "-p", "-o", "value", "-s", "UUID", "--", device], timeout=30)
    if res.rc == 0 and res.stdout.strip():
        return res.stdout.strip()
    real = os.path.realpath(device)
    try:
        for link in os.scandir("/dev/disk/by-uuid"):
            if os.path.realpath(link.path) == real:
                return link.name
    except OSError:
        pass
    return ""
