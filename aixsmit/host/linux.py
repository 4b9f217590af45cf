"""Linux: mountinfo, util-linux ``umount``/``mount``, a /proc holder scan."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ..fs.mounts import Mount, read_mountinfo
from .common import Result, run

TYPE_CHECKING = False  # (typing costs start-up time)
if TYPE_CHECKING:
    from ..fs.holders import Holder


class LinuxHost:
    name = "linux"

    def __init__(self, mountinfo: str = "/proc/self/mountinfo", proc: str = "/proc"):
        self.mountinfo = mountinfo
        self.proc = proc

    def mounts(self) -> list[Mount]:
        return read_mountinfo(self.mountinfo)

    def holders(self, targets: Sequence[Mount], all_mounts: Iterable[Mount]) -> list[Holder]:
        from ..fs import holders as _holders

        return _holders.scan_linux(targets, all_mounts, self.proc)

    def umount_argv(self, mount: Mount, force: bool = False) -> list[str]:
        # Never lazy (-l): a lazily detached file system is still in use, only invisible.
        return ["umount", *(["-f"] if force else []), "--", mount.path]

    def umount(self, mount: Mount, force: bool = False) -> Result:
        return run(self.umount_argv(mount, force))

    @staticmethod
    def is_busy(result: Result) -> bool:
        return result.rc == 32 and "busy" in (result.stderr + result.stdout)

    def mount_argv(self, entry) -> list[str]:
        if entry.bind_source:
            return ["mount", "--bind", "--", entry.bind_source, entry.path]
        source = entry.device
        opts = [o for o in entry.options if o]
        if entry.backing_file and not _loop_backs(entry.device, entry.backing_file):
            # The loop device went away (autoclear on unmount, or a reboot): attach the file anew.
            source = entry.backing_file
            opts = ["loop", *opts]
        elif entry.uuid and not os.path.exists(entry.device):
            by_uuid = f"/dev/disk/by-uuid/{entry.uuid}"
            source = by_uuid if os.path.exists(by_uuid) else f"UUID={entry.uuid}"
        argv = ["mount", "-t", entry.vfs]
        if opts:
            argv += ["-o", ",".join(opts)]
        return argv + ["--", source, entry.path]

    def mount(self, entry) -> Result:
        return run(self.mount_argv(entry))

    def device_facts(self, mount: Mount) -> dict:
        """What is needed to mount ``mount`` again after a crash or a reboot."""
        dev = mount.device
        if not dev.startswith("/dev/"):
            return {"uuid": "", "backing_file": ""}
        return {"uuid": device_uuid(dev), "backing_file": loop_backing_file(dev)}


def loop_backing_file(device: str) -> str:
    """The file behind a loop device ("" for anything else)."""
    name = os.path.basename(os.path.realpath(device))
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return ""


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


def _loop_backs(device: str, backing_file: str) -> bool:
    current = loop_backing_file(device)
    if not current:
        return False
    return os.path.realpath(current) == os.path.realpath(backing_file)
