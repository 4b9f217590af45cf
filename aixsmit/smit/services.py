"""Where F4 lists and current values come from: the same services the commands use.

Each service takes a :class:`System` and returns ``ListItem``s: the value put into the field,
and the text shown in the list.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..fs.classify import SYSTEM, USER
from ..fs.mounts import visible
from ..fs.table import System, top


@dataclass(frozen=True)
class ListItem:
    """One row of an F4 list: ``value`` goes into the field as it is (a name, exactly);
    ``text`` is what the list shows, through the one escaper whatever a service put in it
    (services make each name visible, spaces too, as they build their columns; this second
    pass keeps backslashes and so changes nothing there)."""

    value: str
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", visible(self.text, backslash=False))


Service = Callable[[System], list[ListItem]]
SERVICES: dict[str, Service] = {}

IMAGE_PATTERNS = ("*.mksysb", "*.savevg", "*.img", "*.tar")


def service(fn: Service) -> Service:
    SERVICES[fn.__name__] = fn
    return fn


def _row(*cols: str) -> str:
    return "  ".join(cols)


def _name(text: str) -> str:
    """A name in a list's column: through the one escaper, spaces too (a column is cut at them)."""
    return visible(text, spaces=True)


@service
def mounted_user_fs(system: System) -> list[ListItem]:
    return [ListItem(e.mount_point, _row(f"{_name(e.mount.device):<18}", f"{_name(e.mount_point):<24}", _name(e.mount.vfs)))
            for e in top(system.table(), USER)]


@service
def mounted_fs(system: System) -> list[ListItem]:
    return [ListItem(e.mount_point, _row(f"{_name(e.mount.device):<18}", f"{_name(e.mount_point):<24}", f"{_name(e.mount.vfs):<8}", e.cls))
            for e in system.table() if e.cls in (SYSTEM, USER)]


@service
def unmounted_fs(system: System) -> list[ListItem]:
    """What aixsmit unmounted (the ledger) and what fstab names that is not mounted now."""
    from ..fs import fstab
    from ..fs.unmount import Ledger

    mounted = {e.mount_point for e in system.table()}
    out: list[ListItem] = []
    try:
        entries = Ledger().under(system.root)
    except Exception:  # noqa: BLE001 - an unreadable ledger must not break a list
        entries = []
    for e in entries:
        out.append(ListItem(e.mount_point, _row(f"{_name(e.device):<18}", f"{_name(e.mount_point):<24}", f"{_name(e.vfs):<8}", "(unmounted by aixsmit)")))
    have = {i.value for i in out}
    for fe in sorted(fstab.read(system.root), key=lambda fe: fe.mount_point):
        mp = fe.mount_point
        if mp not in mounted and mp not in have and mp.startswith("/") and fe.vfs not in ("swap", "none"):
            out.append(ListItem(mp, _row(f"{_name(fe.device):<18}", f"{_name(mp):<24}", f"{_name(fe.vfs):<8}", "(fstab)")))
    return out


@service
def volume_groups(system: System) -> list[ListItem]:
    from ..fs.volume_groups import volume_groups as vgs

    return [ListItem(g.name, _row(f"{_name(g.name):<12}", "active" if g.active else "inactive",
                                  " ".join(_name(lv.mount_point) for lv in g.lvs)))
            for g in vgs(system)]


@service
def user_volume_groups(system: System) -> list[ListItem]:
    return [i for i in volume_groups(system) if i.value != "rootvg"]


def image_dirs(system: System) -> list[str]:
    """Where images are looked for: aixsmit's image folder, /backup, /var/backups and, under
    ``--root``, the folder that holds the root (not the root itself: that is the system)."""
    dirs = [os.path.join(os.environ.get("AIXSMIT_STATE_DIR") or "/var/lib/aixsmit", "images"), "/backup", "/var/backups"]
    if system.root != "/":
        dirs.append(os.path.dirname(system.root))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


# An F4 list is built off the screen's thread, and within these bounds whatever lies below the
# folders searched: a list that takes longer is not worth waiting for.
MAX_DEPTH = 3  # folders below each folder searched
MAX_ENTRIES = 20_000  # directory entries looked at, in all
MAX_SECONDS = 2.0
MAX_IMAGES = 200


def find_images(dirs: list[str], skip: tuple[str, ...] = (), patterns=IMAGE_PATTERNS) -> tuple[list[str], bool]:
    """Image files (names matching ``patterns``) in ``dirs`` and up to MAX_DEPTH folders below,
    breadth first, not through symbolic links, not into other file systems or into ``skip``.
    Returns the paths, sorted, and whether a bound (MAX_ENTRIES, MAX_SECONDS, MAX_IMAGES) cut
    the search short."""
    import fnmatch
    import time

    deadline = time.monotonic() + MAX_SECONDS
    seen = 0
    found: list[str] = []
    cut = False
    queue = []
    for d in dirs:
        try:
            queue.append((d, 0, os.stat(d).st_dev))
        except OSError:
            continue
    while queue and not cut:
        folder, depth, dev = queue.pop(0)
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for e in entries:
                seen += 1
                if seen > MAX_ENTRIES or len(found) >= MAX_IMAGES or (seen % 256 == 0 and time.monotonic() > deadline):
                    cut = True
                    break
                try:
                    if e.is_dir(follow_symlinks=False):
                        if depth < MAX_DEPTH and e.path not in skip and e.stat(follow_symlinks=False).st_dev == dev:
                            queue.append((e.path, depth + 1, dev))
                    elif e.is_file(follow_symlinks=False) and any(fnmatch.fnmatch(e.name, p) for p in patterns):
                        found.append(e.path)
                except OSError:
                    continue
    return sorted(set(found)), cut


def _cut_note(cut: bool) -> list[ListItem]:
    return [ListItem("", f"(more not searched: at most {MAX_DEPTH} folders deep, {MAX_SECONDS:.0f} s)")] if cut else []


@service
def backup_images(system: System) -> list[ListItem]:
    paths, cut = find_images(image_dirs(system), skip=(system.root,))
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append(ListItem(path, _row(f"{_name(path):<48}", f"{st.st_size // (1024 * 1024):>8} MB")))
    return out + _cut_note(cut)


@service
def backup_destinations(system: System) -> list[ListItem]:
    """Tape devices, and the image files already there (to be replaced)."""
    out = [ListItem(dev, _row(f"{_name(dev):<48}", "tape device")) for dev in sorted(glob.glob("/dev/st[0-9]*") + glob.glob("/dev/rmt*"))]
    return out + backup_images(system)


@service
def schedules(system: System) -> list[ListItem]:
    from ..jobs import schedule as sch

    return [ListItem(s.id, _row(f"{s.id:<9}", s.describe())) for s in sch.load()]


@service
def schedule_directories(system: System) -> list[ListItem]:
    """Folders a schedule can write into: the usual backup folders and the schedules' own
    (directories only: a schedule writes a new file into one at each run)."""
    from ..jobs import schedule as sch

    try:
        dests = [s.dest for s in sch.load()]
    except Exception:  # noqa: BLE001 - an unreadable schedule list must not break a list
        dests = []
    out = []
    for d in dict.fromkeys(image_dirs(system) + dests):
        if os.path.isdir(d):
            out.append(ListItem(d, _row(f"{_name(d):<48}", "directory")))
    return out


@service
def scheduled_fs(system: System) -> list[ListItem]:
    """The file systems user schedules back up: named in them, or found in their folders."""
    from ..backup.incremental import mount_point_of
    from ..jobs import schedule as sch

    seen: dict[str, str] = {}
    try:
        schedules = [s for s in sch.load() if s.kind == "user"]
    except Exception:  # noqa: BLE001
        schedules = []
    for s in schedules:
        for mp in s.filesystems:
            seen.setdefault(mp, s.id)
        for p in sorted(glob.glob(os.path.join(glob.escape(s.dest), "*"))) if os.path.isdir(s.dest) else []:
            mp = mount_point_of(os.path.basename(p))
            if mp and os.path.isdir(p):
                seen.setdefault(mp, s.id)
    return [ListItem(mp, _row(f"{_name(mp):<24}", f"schedule {sid}")) for mp, sid in sorted(seen.items())]


@service
def level_archives(system: System) -> list[ListItem]:
    """Backups by level: the schedules' chains (full first, then its dailies) and the level
    archives of Backup a File System found in the usual folders."""
    from ..backup import chains
    from ..backup.incremental import mount_point_of
    from ..jobs import schedule as sch

    out: list[ListItem] = []
    try:
        schedules = [s for s in sch.load() if s.kind == "user"]
    except Exception:  # noqa: BLE001
        schedules = []
    seen: set[str] = set()
    for s in schedules:
        for folder in sorted(glob.glob(os.path.join(glob.escape(s.dest), "*"))) if os.path.isdir(s.dest) else []:
            mp = mount_point_of(os.path.basename(folder)) or os.path.basename(folder)
            for c in chains.list_chains(Path(folder)):
                for stamp, level, path in c.runs():
                    seen.add(str(path))
                    out.append(ListItem(str(path), _row(f"{_name(mp):<16}", f"level {level}", f"{chains.when(stamp):%Y-%m-%d %H:%M}",
                                                        f"schedule {s.id}")))
    found: list[str] = []
    for d in image_dirs(system):
        for depth in range(3):  # bounded: an F4 list is not a search of the whole disk
            found += sorted(glob.glob(os.path.join(glob.escape(d), *["*"] * depth, "*.tar")))[:200]
    inside_root = system.root.rstrip("/") + "/"
    for path in list(dict.fromkeys(found))[:200]:
        if path not in seen and (system.root == "/" or not path.startswith(inside_root)):
            level = chains.archive_level(path)
            if level is not None:
                out.append(ListItem(path, _row(f"{_name(path):<48}", f"level {level}" if level >= 0 else "level backup")))
    return out


@service
def free_devices(system: System) -> list[ListItem]:
    """Block devices nothing has mounted: candidates for a new file system or a clone."""
    from ..fs.mounts import read_mountinfo

    busy = {m.dev for m in read_mountinfo()}
    out = []
    for name in sorted(os.listdir("/sys/class/block")) if os.path.isdir("/sys/class/block") else []:
        base = f"/sys/class/block/{name}"
        try:
            size = int(open(f"{base}/size").read()) * 512
            dev = open(f"{base}/dev").read().strip()
        except (OSError, ValueError):
            continue
        if size == 0 or dev in busy or name.startswith(("ram", "zram")):
            continue
        note = ""
        try:
            note = "file " + open(f"{base}/loop/backing_file").read().strip()
        except OSError:
            pass
        out.append(ListItem(f"/dev/{name}", _row(f"/dev/{_name(name):<12}", f"{size >> 20:>8} MB", visible(note))))
    return out


@service
def free_disks(system: System) -> list[ListItem]:
    """Whole disks that are blank (no partition table, no file system, nothing mounted or held),
    from ``lsblk --json``: where clone --disk may install a system image. What lsblk cannot know
    without udev's database (file system and partition table types) is probed with blkid."""
    import json
    import subprocess

    from ..fs.crfs import existing_fs

    try:
        proc = subprocess.run(["lsblk", "--json", "--bytes", "-o", "PATH,SIZE,TYPE,FSTYPE,PTTYPE,MOUNTPOINT,MODEL"],
                              capture_output=True, text=True, errors="surrogateescape", timeout=20)
        devices = json.loads(proc.stdout).get("blockdevices", []) if proc.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        devices = []
    out = []
    for d in devices:
        if d.get("type") not in ("disk", "loop") or d.get("children") or d.get("fstype") or d.get("pttype") \
                or d.get("mountpoint") or not int(d.get("size") or 0):
            continue
        path, size = d["path"], int(d["size"])
        if existing_fs(path):
            continue
        note = (d.get("model") or "").strip()
        try:
            note = "file " + open(f"/sys/class/block/{os.path.basename(path)}/loop/backing_file").read().strip()
        except OSError:
            pass
        out.append(ListItem(path, _row(f"{_name(path):<14}", f"{size >> 20:>8} MB", "blank", visible(note))))
    return out
