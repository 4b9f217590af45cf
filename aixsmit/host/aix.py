"""AIX: drive the real ``mount``, ``umount`` and ``fuser``, and parse what they print."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import AixsmitError, ParseError
from ..fs.mounts import Mount, parse_aix_mount
from .common import Result, run

TYPE_CHECKING = False  # (typing costs start-up time)
if TYPE_CHECKING:
    from ..fs.holders import Holder


class AixHost:
    name = "aix"

    def mounts(self) -> list[Mount]:
        res = run(["mount"])
        if res.rc != 0:
            raise AixsmitError(f"mount: {res.message}")
        try:
            return parse_aix_mount(res.stdout)
        except ParseError as exc:
            raise ParseError(f"output of mount: {exc}") from None

    def holders(self, targets: Sequence[Mount], all_mounts: Iterable[Mount]) -> list[Holder]:
        from ..fs import holders as _holders

        out: list[_holders.Holder] = []
        for m in targets:
            res = run(["fuser", "-cu", m.path], merge=True)
            found = _holders.parse_aix_fuser(res.stdout, m.path)
            out.extend(found)
        if out:
            names = _process_names({h.pid for h in out})
            out = [
                _holders.Holder(h.pid, h.user, names.get(h.pid, h.command), h.how, h.path) for h in out
            ]
        return out

    def umount_argv(self, mount: Mount, force: bool = False) -> list[str]:
        return ["umount", *(["-f"] if force else []), mount.path]

    def umount(self, mount: Mount, force: bool = False) -> Result:
        return run(self.umount_argv(mount, force))

    @staticmethod
    def is_busy(result: Result) -> bool:
        return result.rc != 0 and "0506-349" in (result.stderr + result.stdout)

    def mount_argv(self, entry) -> list[str]:
        argv = ["mount", "-v", entry.vfs]
        if entry.options:
            argv += ["-o", ",".join(entry.options)]
        return argv + [entry.device, entry.path]

    def mount(self, entry) -> Result:
        return run(self.mount_argv(entry))

    def device_facts(self, mount: Mount) -> dict:
        return {}

    def identity(self, mount: Mount):
        """AIX names a logical volume the same on every boot: its device is its identity."""
        from ..fs.ledger import Identity

        return Identity(source=mount.device)

    def holds(self, ident, mount: Mount) -> bool:
        return mount.device == ident.source

    def matches(self, rec, mount: Mount) -> bool:
        return mount.vfs == rec.vfs and self.holds(rec.identity, mount)


def _process_names(pids: set[int]) -> dict[int, str]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return {}
    names = {}
    for pid in pids:
        try:
            names[pid] = psutil.Process(pid).name()
        except (psutil.Error, OSError):
            pass
    return names
