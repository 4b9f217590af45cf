"""Install an image onto other devices: a system image (clone) or a volume group backup (restvg).

From the image's information file: for each file system, make one of the recorded type on the
device mapped to its mount point (checked against the data the image holds for it: a smaller
device is fine when the data fits - AIX's SHRINK), mount them under the target by mount point,
parents first, restore the image, and rewrite the references to the old file systems (fstab
from the source's own fstab, crypttab, resume, GRUB's defaults) for the new UUIDs.

A clone is then made to boot (``boot.make_bootable``): the boot loader goes onto the disk that
holds the partition mapped to ``/`` (or ``--boot-disk``). With ``--disk`` the clone partitions a
blank disk itself first (``disk.layout``). Every file written or edited in the target is
resolved inside it (``aixsmit.inroot``): a restored tree's links never lead a write outside.
Each step is printed with its command before it runs; ``dry_run`` prints them all and runs none.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from typing import Callable

from .. import inroot
from ..errors import AixsmitError
from ..fs.crfs import check_device, device_size, mkfs, mkfs_argv
from . import archive, image_data
from . import disk as disks

Emit = Callable[[str, str], None]
OVERHEAD = 8 << 20  # journal and metadata of a small file system
# Files that name file systems by UUID besides fstab (old UUID -> new UUID in each).
UUID_FILES = ("etc/crypttab", "etc/initramfs-tools/conf.d/resume", "etc/default/grub", "etc/kernel/cmdline")
UUID_DIRS = ("etc/default/grub.d",)
# What the image's members tell about how it boots and how its initramfs is made.
PROBES = ("./usr/sbin/grub-install", "./sbin/grub-install", "./usr/lib/grub/i386-pc", "./usr/lib/grub/x86_64-efi",
          "./usr/lib/grub/x86_64-efi/kernel.img",
          "./usr/sbin/update-grub", "./usr/sbin/grub-mkconfig", "./usr/sbin/update-initramfs", "./usr/bin/dracut",
          "./usr/sbin/dracut", "./usr/bin/mkinitcpio", "./usr/bin/debconf-set-selections", "./usr/bin/ssh-keygen")


@dataclass
class Target:
    mount_point: str
    device: str
    vfs: str
    device_bytes: int
    data_bytes: int
    recorded_bytes: int
    options: str
    fit: str = ""  # "full size" | "shrunk"
    uuid: str = ""
    old_uuid: str = ""
    old_device: str = ""


@dataclass
class Contents:
    """What a pass over the image found: data per file system, and the PROBES it holds."""
    data: dict[str, int]
    present: set[str] = field(default_factory=set)
    fstab: str = ""  # the image's /etc/fstab


def fstab_mount_points(text: str) -> set[str]:
    """The mount points an fstab names (comments and short lines left out)."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and parts[1].startswith("/"):
            out.add(os.path.normpath(parts[1].replace("\\040", " ")))
    return out


def parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        mp, sep, dev = item.partition("=")
        if not sep or not mp.startswith("/") or not dev:
            raise AixsmitError(f"--map {item}: expected MOUNTPOINT=DEVICE, such as /usr=/dev/sdb2", code=2)
        mp = os.path.normpath(mp)
        if mp in out:
            raise AixsmitError(f"--map: {mp} is mapped twice", code=2)
        out[mp] = dev
    if len(set(out.values())) != len(out):
        raise AixsmitError("--map: one device is mapped to two file systems", code=2)
    return out


def survey(image: str, mount_points: list[str], program: str = "clone") -> Contents:
    """Bytes of file data the image holds for each file system (its deepest mount point), which
    of PROBES it holds, and its /etc/fstab (read as the one pass over the image meets it)."""
    order = sorted(mount_points, key=len, reverse=True)
    found = Contents({mp: 0 for mp in mount_points})
    damage = archive.Damage()
    with archive.open_image(image, program) as tf:
        for m in archive.read_members(tf, damage):
            norm = archive._norm(m.name)
            if norm in PROBES:
                found.present.add(norm)
            elif norm == "./etc/fstab" and m.isfile() and m.size < (1 << 20):
                try:
                    f = tf.extractfile(m)
                    found.fstab = f.read().decode("utf-8", "surrogateescape") if f else ""
                except (tarfile.TarError, OSError, EOFError):
                    found.fstab = ""  # the damage is reported by the reading itself
            name = "/" + norm[2:]
            for mp in order:
                if mp == "/" or name == mp or name.startswith(mp + "/"):
                    found.data[mp] += m.size
                    break
    if damage:
        raise archive.damaged(image, program, damage)
    return found


def recorded_fs(image: str, program: str = "clone") -> dict[str, dict[str, str]]:
    """The image's fs_data stanzas by mount point."""
    info = archive.read_info(image, program)
    recorded = {fs.get("FS_NAME", ""): fs for fs in image_data.every(info.stanzas, "fs_data")}
    if "" in recorded or not all(mp.startswith("/") for mp in recorded):
        raise AixsmitError(f"{program}: {image}: an fs_data stanza of its information file has no FS_NAME that is an "
                           "absolute mount point")
    return recorded


def _depth(mp: str) -> tuple[int, str]:
    return (0, "") if mp == "/" else (mp.count("/"), mp)


def needed_bytes(data: int) -> int:
    return int(data * 1.1) + OVERHEAD


def plan(image: str, mapping: dict[str, str], program: str = "clone", *, sizes: dict[str, int] | None = None,
         contents: Contents | None = None, recorded: dict[str, dict[str, str]] | None = None) -> list[Target]:
    """The fitting: one Target per file system of the image (``recorded``: its fs_data stanzas,
    read from it when not given), parents first. ``sizes`` gives the devices' sizes where they do
    not exist yet (partitions still to be made)."""
    recorded = recorded if recorded is not None else recorded_fs(image, program)
    missing = [mp for mp in recorded if mp not in mapping]
    if missing:
        raise AixsmitError(f"{program}: no device is mapped for {', '.join(missing)} (the image holds "
                           f"{', '.join(recorded)}); give --map {missing[0]}=DEVICE")
    extra = [mp for mp in mapping if mp not in recorded]
    if extra:
        raise AixsmitError(f"{program}: the image has no file system {extra[0]} (it holds {', '.join(recorded)})")
    data = (contents or survey(image, list(recorded), program)).data
    data = {mp: data.get(mp, 0) for mp in recorded}
    targets = []
    for mp, fs in sorted(recorded.items(), key=lambda kv: _depth(kv[0])):
        dev = mapping[mp]
        if sizes is None and not os.path.exists(dev):
            raise AixsmitError(f"{program}: {dev} (for {mp}) does not exist.")
        size = sizes[mp] if sizes is not None else device_size(dev)
        need = needed_bytes(data[mp])
        rec = archive._int(fs.get("FS_SIZE_BYTES", "")) or archive._int(fs.get("FS_SIZE", "0")) * 512
        if size < need:
            raise AixsmitError(
                f"0512-029 {program}: There is not enough room on {dev} for {mp}: the image holds "
                f"{data[mp] // (1 << 20) + 1} MB for it, about {need // (1 << 20) + 1} MB are needed with the file "
                f"system's own space, and {dev} has {size // (1 << 20)} MB.")
        targets.append(Target(mp, dev, fs.get("FS_VFS", "ext4"), size, data[mp], rec, fs.get("FS_OPTIONS", ""),
                              "full size" if size >= rec else "shrunk", old_uuid=fs.get("FS_UUID", ""),
                              old_device=fs.get("FS_LV", "")))
    return targets


def format_plan(targets: list[Target]) -> list[str]:
    lines = [f"{'MOUNT POINT':<20} {'DEVICE':<16} {'TYPE':<6} {'DEVICE MB':>9} {'DATA MB':>8} {'WAS MB':>7}  FIT"]
    for t in targets:
        lines.append(f"{t.mount_point:<20} {t.device:<16} {t.vfs:<6} {t.device_bytes >> 20:>9} "
                     f"{(t.data_bytes >> 20) + 1:>8} {t.recorded_bytes >> 20:>7}  {t.fit}")
    return lines


class Steps:
    """Runs (or, in a dry run, only prints) the clone's commands, each shown before it runs."""

    def __init__(self, emit: Emit, dry_run: bool, program: str = "clone"):
        self.emit, self.dry_run, self.program = emit, dry_run, program

    def say(self, text: str) -> None:
        self.emit(text, "stdout")

    def run(self, argv: list[str], *, input: str | None = None, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess | None:
        shown = shlex.join(argv) + (" <<EOF\n" + input + "EOF" if input else "")
        self.say(("Would run: " if self.dry_run else "Running: ") + shown)
        if self.dry_run:
            return None
        try:
            proc = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="surrogateescape", env=env, timeout=timeout)
        except FileNotFoundError:
            raise AixsmitError(f"{self.program}: {argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            raise AixsmitError(f"{self.program}: {shlex.join(argv[:3])} did not finish within {timeout:.0f} seconds")
        for line in proc.stdout.splitlines():
            self.emit(line, "stdout")
        for line in proc.stderr.splitlines():
            self.emit(line, "stderr")
        if check and proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
            raise AixsmitError(f"{self.program}: {shlex.join(argv)} failed (exit status {proc.returncode})"
                               + (f": {last}" if last else ""))
        return proc


# --- edits inside the target ---------------------------------------------------------------------

def _edit_error(program: str, target: str, path: str, exc: OSError) -> AixsmitError:
    return AixsmitError(f"{program}: cannot edit /{path.lstrip('/')} in the clone under {target}: "
                        f"{exc.strerror or exc} (clone resolves every path inside the target)")


def read_text(target: str, path: str, program: str = "clone") -> str | None:
    try:
        data = inroot.read_in(target, path)
    except OSError as exc:
        raise _edit_error(program, target, path, exc)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def write_text(target: str, path: str, text: str, program: str = "clone", mode: int = 0o644) -> None:
    try:
        inroot.makedirs_in(target, os.path.dirname(path.strip("/")))
        inroot.write_in(target, path, text.encode("utf-8", "surrogateescape"), mode)
    except OSError as exc:
        raise _edit_error(program, target, path, exc)


DEVICE_SPECS = ("UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/")


def fstab_text(text: str, targets: list[Target], other_machine: bool = False) -> str:
    """The source's fstab with each cloned file system's line naming its new UUID.

    Options, dump and pass come from the source's own line (not the mount table: a root mounted
    read-only for the backup must not give a clone whose fstab says ``ro``); a file system the
    fstab did not list gets a line from the image's record, without the state-only options.
    ``other_machine`` (a clone): the lines for devices the image does not hold (swap, other
    disks) are kept with ``nofail`` added, so the new machine boots without them.
    """
    by_mp = {t.mount_point: t for t in targets}
    out, done = [], set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and other_machine and parts[0].startswith(DEVICE_SPECS) \
                and os.path.normpath(parts[1].replace("\\040", " ")) not in by_mp \
                and "nofail" not in parts[3].split(","):
            parts[3] = "nofail" if parts[3] == "defaults" else parts[3] + ",nofail"
            out.append(" ".join(parts))
            continue
        if len(parts) >= 3 and not parts[0].startswith("#"):
            mp = os.path.normpath(parts[1].replace("\\040", " "))
            t = by_mp.get(mp)
            if t is not None and mp not in done:
                rest = parts[3:] or ["defaults"]
                if len(rest) < 3:
                    rest += ["0", "1" if mp == "/" else "2"][len(rest) - 1:]
                out.append(" ".join([f"UUID={t.uuid}", parts[1], t.vfs] + rest))
                done.add(mp)
                continue
            if t is not None:
                continue  # a second line for the same mount point would mount the old device over it
        out.append(line)
    for t in targets:
        if t.mount_point not in done:
            opts = ",".join(o for o in t.options.split(",")
                            if o and o not in ("rw", "ro", "relatime", "seclabel")) or "defaults"
            spec = t.mount_point.replace(" ", r"\040")
            out.append(f"UUID={t.uuid} {spec} {t.vfs} {opts} 0 {1 if t.mount_point == '/' else 2}")
    return "\n".join(out) + "\n"


def rewrite_references(target: str, targets: list[Target], steps: Steps, program: str, fstab_root: str | None) -> None:
    """fstab for the new UUIDs, and every other file naming an old UUID (crypttab, resume, GRUB)."""
    fstab_target = fstab_root or target
    old = read_text(fstab_target, "etc/fstab", program) or ""
    steps.say(f"Writing /etc/fstab of {fstab_target} from the source's fstab, for the new UUIDs"
              + ("" if fstab_root else "; devices the image does not hold (swap, other disks) get nofail") + ".")
    if not steps.dry_run:
        write_text(fstab_target, "etc/fstab", fstab_text(old, targets, other_machine=not fstab_root), program)
    swaps = {t.old_uuid: t.uuid for t in targets if t.old_uuid}
    if not swaps or fstab_root:
        return
    names = list(UUID_FILES)
    for d in UUID_DIRS:
        try:
            fd = inroot.open_in(target, d, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            names += [f"{d}/{n}" for n in sorted(os.listdir(fd))]
        finally:
            os.close(fd)
    for name in names:
        text = read_text(target, name, program)
        if text is None or not any(u in text for u in swaps):
            continue
        new = text
        for u, n in swaps.items():
            new = new.replace(u, n if not steps.dry_run else f"(new UUID for {u})")
        steps.say(f"Rewriting /{name}: old file system UUIDs replaced by the new ones.")
        if not steps.dry_run:
            write_text(target, name, new, program)


def set_hostname(target: str, hostname: str, steps: Steps, program: str) -> None:
    steps.say(f"Setting the host name to {hostname} (/etc/hostname, /etc/hosts).")
    if steps.dry_run:
        return
    write_text(target, "etc/hostname", hostname + "\n", program)
    hosts = read_text(target, "etc/hosts", program)
    if hosts is not None:
        lines = [l if not l.startswith("127.0.1.1") else f"127.0.1.1\t{hostname}" for l in hosts.splitlines()]
        if not any(l.startswith("127.0.1.1") for l in lines):
            lines.append(f"127.0.1.1\t{hostname}")
        write_text(target, "etc/hosts", "\n".join(lines) + "\n", program)


# --- the whole installation --------------------------------------------------------------------

def boot_disk_of(device: str) -> str | None:
    """The whole disk that holds partition ``device``, or None when it is not a partition."""
    name = os.path.basename(os.path.realpath(device))
    sys_dir = f"/sys/class/block/{name}"
    if not os.path.exists(f"{sys_dir}/partition"):
        return None
    return "/dev/" + os.path.basename(os.path.dirname(os.path.realpath(sys_dir)))


def fill_fat(t: Target, path: str, steps: Steps, program: str, check_esp: bool = False) -> None:
    """Copy what is staged at ``path`` onto the FAT file system on ``t.device`` (mtools), then,
    for the ESP, check on the FAT itself that the fallback boot loader is there."""
    steps.say(f"Copying {t.mount_point} onto the FAT file system on {t.device}.")
    if not steps.dry_run:
        # FAT holds files and folders only, and mcopy would follow a link: one in the image
        # (to /etc/shadow, say) would copy this host's file into the clone. Left out, and said.
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(top, name)
                st = os.lstat(full)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    rel = os.path.join(t.mount_point, os.path.relpath(full, path))
                    steps.emit(f"{program}: {rel} is left out of the FAT file system: FAT holds no links or "
                               f"special files.", "stderr")
                    os.unlink(full)
            dirs[:] = [d for d in dirs if os.path.isdir(os.path.join(top, d))]
    entries = [os.path.join(path, "*")] if steps.dry_run else \
        [os.path.join(path, n) for n in sorted(os.listdir(path))]
    if entries:
        steps.run(disks.fat_copy_argv(t.device, entries), env=disks.MTOOLS_ENV)
    if check_esp:
        res = steps.run(["mdir", "-b", "-i", t.device, "::/EFI/BOOT/BOOTX64.EFI"], env=disks.MTOOLS_ENV, check=False)
        if res is not None and res.returncode != 0:
            raise AixsmitError(f"{program}: the EFI system partition {t.device} holds no EFI/BOOT/BOOTX64.EFI after "
                               f"the copy: firmware without an NVRAM entry would not boot the clone.")


def install(image: str, mapping: dict[str, str], target: str, emit: Emit, *, dry_run: bool = False,
            overwrite: bool = False, hostname: str = "", keep_mounted: bool = False, program: str = "clone",
            fstab_root: str | None = None, disk: str = "", layout_file: str = "", boot_disk: str = "",
            boot: bool = True, initramfs: str = "auto", new_ssh_keys: bool = False) -> list[Target]:
    """Install ``image``: onto ``mapping`` (mount point -> device), or onto the blank ``disk``.

    For a clone (``boot``) the boot loader goes onto ``boot_disk``, or the disk holding the
    partition mapped to ``/``. Returns the targets (their ``uuid`` set unless ``dry_run``).
    Raises AixsmitError, before anything is written, for a mapping, size or boot problem.
    """
    from . import boot as booting

    steps = Steps(emit, dry_run, program)
    if disk and mapping:
        raise AixsmitError(f"{program}: give either --disk or --map, not both", code=2)
    recorded = recorded_fs(image, program)
    contents = survey(image, list(recorded), program)
    bios, efi = True, False
    unbootable = None  # said after the fitting, as it always was: a size error first
    if boot and program == "clone":
        try:
            bios, efi = booting.firmware(image, contents, recorded, program)
        except AixsmitError as exc:
            unbootable = exc
    new_esp = efi and disks.ESP_MOUNT not in recorded
    if new_esp:
        # The image's fstab names an ESP it does not hold (it was not mounted for the backup):
        # a new, empty one, which grub-install fills; its fstab line gets the new UUID.
        recorded[disks.ESP_MOUNT] = {"FS_NAME": disks.ESP_MOUNT, "FS_VFS": "vfat", "FS_OPTIONS": "umask=0077",
                                     "FS_SIZE_BYTES": str(disks.ESP_DEFAULT)}
        contents.data[disks.ESP_MOUNT] = 0
    parts: list[disks.Part] = []
    if disk:
        if not os.path.exists(disk):
            raise AixsmitError(f"{program}: {disk} does not exist.")
        ordered = sorted(recorded, key=_depth)
        if efi:  # the ESP first: the last partition takes the rest of the disk
            ordered = [disks.ESP_MOUNT] + [mp for mp in ordered if mp != disks.ESP_MOUNT]
        fss = [(mp, needed_bytes(contents.data[mp]),
                int(recorded[mp].get("FS_SIZE_BYTES") or int(recorded[mp].get("FS_SIZE", "0") or 0) * 512))
               for mp in ordered]
        fixed = None
        if layout_file:
            try:
                with open(layout_file, "rb") as f:
                    text = f.read(1 << 16).decode("utf-8", "replace")
            except OSError as exc:
                raise AixsmitError(f"{program}: --layout {layout_file}: {exc.strerror}", code=2)
            fixed = disks.parse_layout(text, ordered, layout_file,
                                       optional={disks.ESP_MOUNT: disks.ESP_DEFAULT} if new_esp else None)
        parts = disks.layout(disk, device_size(disk), fss, fixed, bios=bios, efi=efi)
        mapping = {p.mount_point: p.device for p in parts if p.mount_point}
        sizes = {p.mount_point: p.size for p in parts if p.mount_point}
        sizes[parts[-1].mount_point] = device_size(disk) - sum(p.size for p in parts[:-1]) - disks.START - disks.GPT_TAIL
        targets = plan(image, mapping, program, sizes=sizes, contents=contents, recorded=recorded)
    else:
        targets = plan(image, mapping, program, contents=contents, recorded=recorded)
    root = next((t for t in targets if t.mount_point == "/"), None)
    if unbootable:
        raise unbootable
    if boot and program == "clone":
        if not boot_disk and bios:
            boot_disk = disk or (boot_disk_of(root.device) if root else "") or ""
        booting.check(image, contents, boot_disk, root.device if root else "", bool(disk), program,
                      recorded=recorded, mapping=mapping, bios=bios, efi=efi)
    for line in format_plan(targets):
        emit(line, "stdout")
    if new_esp:
        steps.say(f"The image holds no {disks.ESP_MOUNT} (it was not mounted for the backup) and its fstab names "
                  f"one: clone makes a new EFI system partition for it, which GRUB fills.")
    if disk:
        check_device(disk, program, overwrite=overwrite)
    elif not dry_run:
        for t in targets:
            check_device(t.device, program, overwrite=overwrite)
    for t in targets:  # every tool is there before anything is written
        if t.vfs in disks.FAT_VFS:
            for tool, package in (("mkfs.vfat", "dosfstools"), ("mcopy", "mtools")):
                if shutil.which(tool) is None:
                    raise AixsmitError(f"{program}: {tool} is not installed (package {package}): it makes and fills "
                                       f"the FAT file system for {t.mount_point}.")
        else:
            mkfs_argv(t.device, t.vfs)
    if dry_run:
        for t in targets:
            t.uuid = f"(new UUID of {t.mount_point})"
    mounted: list[str] = []
    staged: list[tuple[Target, str]] = []  # FAT file systems staged in a tmpfs, copied on at the end
    added_parts = False
    try:
        if disk:
            kinds = ", ".join(k for k, on in (("a BIOS boot partition", bios), ("an EFI system partition", efi)) if on)
            steps.say(f"Partitioning {disk}: GPT, {kinds + ', ' if kinds else ''}one partition per file system.")
            steps.run(["sfdisk", "--wipe", "always", "--wipe-partitions", "always", disk],
                      input=disks.sfdisk_script(parts))
            if disks.is_loop(disk) and not dry_run:
                # The kernel may still hold partitions of what the disk held before (a loop number
                # used again): drop them, then add the ones just written, so no file system is made
                # on an old partition's extent.
                steps.run(["partx", "-d", disk], check=False)
                steps.run(["partx", "-a", disk])
                added_parts = True
            elif disks.is_loop(disk) and dry_run:
                steps.run(["partx", "-a", disk])
        for t in targets:
            steps.say(f"Making a {t.vfs} file system on {t.device} for {t.mount_point} ({t.fit}).")
            label = os.path.basename(t.mount_point) or "root"
            if t.vfs in disks.FAT_VFS:
                steps.run(disks.fat_mkfs_argv(t.device, "EFI" if t.mount_point == disks.ESP_MOUNT else label))
                if not dry_run:
                    from ..host.linux import device_uuid

                    t.uuid = device_uuid(t.device)
                continue
            steps.say(("Would run: " if dry_run else "Running: ") + shlex.join(mkfs_argv(t.device, t.vfs, label=label)))
            if not dry_run:
                t.uuid = mkfs(t.device, t.vfs, label=label)
        for t in targets:  # parents first: the plan is ordered by depth
            if not dry_run:
                try:
                    inroot.makedirs_in(target, t.mount_point)
                    path = inroot.real_dir(target, t.mount_point)
                except OSError as exc:
                    raise AixsmitError(f"{program}: cannot make the mount point {t.mount_point} under {target}: "
                                       f"{exc.strerror}")
            else:
                path = os.path.join(target, t.mount_point.lstrip("/"))
            if t.vfs in disks.FAT_VFS:
                steps.say(f"Staging {t.mount_point} in memory (a tmpfs named after {t.device}): its files are "
                          f"copied onto the FAT file system with mtools at the end.")
                steps.run(disks.fat_stage_argv(t.device, path))
                staged.append((t, path))
            else:
                steps.run(["mount", "-t", t.vfs, "--", t.device, path])
            mounted.append(path)
        steps.say(f"Restoring {image} into {target}.")
        if not dry_run:
            archive.restore(image, target, [], False, emit, program=program)
        rewrite_references(target, targets, steps, program, fstab_root)
        if hostname:
            set_hostname(target, hostname, steps, program)
        if boot and program == "clone":
            booting.make_bootable(target, targets, contents, boot_disk, steps, initramfs=initramfs,
                                  new_ssh_keys=new_ssh_keys, bios=bios, efi=efi)
        for t, path in staged:
            fill_fat(t, path, steps, program, check_esp=efi and t.mount_point == disks.ESP_MOUNT)
    finally:
        if not keep_mounted:
            for path in reversed(mounted):
                steps.run(["umount", "--", path], check=False)
        if added_parts and not keep_mounted:
            steps.run(["partx", "-d", disk], check=False)
    if dry_run:
        emit(f"{program}: dry run: no device was touched.", "stdout")
    return targets
