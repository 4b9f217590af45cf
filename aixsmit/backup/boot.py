"""Make a restored system boot: its own initramfs tool and GRUB, run in a chroot of the clone.

A system boots by BIOS (GRUB's i386-pc in the image), by EFI (GRUB's x86_64-efi modules and an
EFI system partition on /boot/efi, in its image.data or its fstab), or both; the clone gets
each boot loader the image has. GRUB for EFI is installed with ``--no-nvram`` (the firmware's
boot entries belong to the machine that boots the clone, not to this one) and again with
``--removable``, at the fallback path EFI/BOOT/BOOTX64.EFI that firmware boots without an entry.

What was found making clones boot (a Debian source, GPT, GRUB for BIOS): ``grub-install
--target=i386-pc DISK`` and ``update-grub``, both the clone's own, run in its chroot, are what
make it boot - without the first the machine hangs after the BIOS, without the second GRUB looks
for the source's root UUID (and, with the source disk attached, silently boots the source). A
GPT disk needs a BIOS boot partition for GRUB's core image. On hosts without udev the chroot's
``/dev/disk/by-uuid`` links are made here (and removed again), or ``update-grub`` writes a
``root=/dev/loopNpM`` that means nothing to the new machine. The initramfs is made again only
when the source's depends on the old machine (host-only drivers, resume, crypttab).

The chroot has ``/dev``, ``/proc``, ``/sys`` and ``/run`` bound, and they are unbound again
whatever happens. Identity reset: ``/etc/machine-id`` (made anew at first boot), GRUB's install
device recorded in debconf, and SSH host keys on request.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager

from .. import inroot
from ..errors import AixsmitError
from . import disk as disks

CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive", "TERM": "dumb"}
BINDS = ("dev", "proc", "sys", "run")
INITRAMFS_TOOLS = (("./usr/sbin/update-initramfs", ["update-initramfs", "-u", "-k", "all"]),
                   ("./usr/bin/dracut", ["dracut", "--force", "--regenerate-all"]),
                   ("./usr/sbin/dracut", ["dracut", "--force", "--regenerate-all"]),
                   ("./usr/bin/mkinitcpio", ["mkinitcpio", "-P"]))


def _has_grub(present: set[str]) -> bool:
    return "./usr/sbin/grub-install" in present or "./sbin/grub-install" in present


HINT = "; give --no-boot to install it without a boot loader"


def firmware(image: str, contents, recorded: dict, program: str = "clone") -> tuple[bool, bool]:
    """(bios, efi): how the image's system boots, from what it holds (GRUB's platforms) and
    where its ESP is (/boot/efi in image.data or in its fstab). Raises when it holds no GRUB,
    GRUB for EFI without its modules or without an ESP, or for no platform clone installs."""
    from .clone import fstab_mount_points

    present = contents.present
    if not _has_grub(present):
        raise AixsmitError(f"{program}: {image} holds no GRUB (/usr/sbin/grub-install): aixsmit makes a clone "
                           f"boot with the image's own GRUB, so this one would not boot{HINT}")
    bios = "./usr/lib/grub/i386-pc" in present
    efi_grub = "./usr/lib/grub/x86_64-efi" in present
    esp = disks.ESP_MOUNT in recorded or disks.ESP_MOUNT in fstab_mount_points(getattr(contents, "fstab", ""))
    if efi_grub and esp and "./usr/lib/grub/x86_64-efi/kernel.img" not in present:
        raise AixsmitError(f"{program}: {image} has GRUB for EFI without its modules (/usr/lib/grub/x86_64-efi/"
                           f"kernel.img, package grub-efi-amd64-bin): grub-install could not make its image{HINT}")
    efi = efi_grub and esp
    if not bios and not efi:
        if efi_grub:
            raise AixsmitError(f"{program}: {image} has GRUB for EFI (x86_64-efi) but no EFI system partition: "
                               f"neither its image.data nor its /etc/fstab has {disks.ESP_MOUNT}{HINT}")
        raise AixsmitError(f"{program}: {image} has GRUB for no platform clone installs (i386-pc for BIOS, "
                           f"x86_64-efi for EFI: packages grub-pc-bin, grub-efi-amd64-bin){HINT}")
    return bios, efi


def check(image: str, contents, boot_disk: str, root_device: str, whole_disk: bool, program: str = "clone", *,
          recorded: dict | None = None, mapping: dict[str, str] | None = None, bios: bool | None = None,
          efi: bool | None = None) -> None:
    """Refuse, before anything is written, a clone that could not be made to boot: BIOS needs a
    disk GRUB can embed into; EFI needs /boot/efi on FAT, on a partition of the ESP type."""
    recorded = recorded or {}
    if bios is None or efi is None:
        bios, efi = firmware(image, contents, recorded, program)
    if efi:
        vfs = recorded.get(disks.ESP_MOUNT, {}).get("FS_VFS", "vfat")
        if vfs not in disks.FAT_VFS:
            raise AixsmitError(f"{program}: {image} records {disks.ESP_MOUNT} as {vfs}, not FAT: firmware reads "
                               f"an EFI system partition only as FAT{HINT}")
        esp_dev = (mapping or {}).get(disks.ESP_MOUNT, "")
        if not whole_disk and esp_dev:
            ptype = disks.partition_type(esp_dev)
            if not disks.is_esp_type(ptype):
                raise AixsmitError(f"{program}: {esp_dev} (for {disks.ESP_MOUNT}) is not an EFI system partition "
                                   f"(type {ptype or 'none: not a partition'}): firmware would not look for a boot "
                                   f"loader on it; give it the type EFI System ({disks.ESP}), or use --disk{HINT}")
    if not bios:
        return
    if not boot_disk:
        raise AixsmitError(f"{program}: {root_device} (for /) is not a partition of a disk, so there is no disk to "
                           f"put the boot loader on: give --boot-disk DISK{HINT}")
    if whole_disk:
        return
    if not os.path.exists(boot_disk):
        raise AixsmitError(f"{program}: the boot disk {boot_disk} does not exist.")
    busy = mounted_parts(boot_disk)
    if busy:
        raise AixsmitError(f"{program}: the boot disk {boot_disk} holds {busy[0][0]}, mounted on {busy[0][1]}: "
                           f"clone will not replace the boot loader of a disk in use (this machine's own?); give "
                           f"--boot-disk DISK{HINT}")
    res = subprocess.run(["sfdisk", "--json", boot_disk], capture_output=True, text=True)
    try:
        table = json.loads(res.stdout)["partitiontable"] if res.returncode == 0 else {}
    except (ValueError, KeyError):
        table = {}
    label = table.get("label", "")
    if label == "gpt":
        if not any(p.get("type", "").upper() == disks.BIOS_BOOT for p in table.get("partitions", [])):
            raise AixsmitError(f"{program}: {boot_disk} has a GPT without a BIOS boot partition: grub-install would "
                               f"fail (embedding is not possible). Add a 1 MB partition of type BIOS boot "
                               f"({disks.BIOS_BOOT}), or use --disk to let clone partition a blank disk{HINT}")
    elif label == "dos":
        first = min((p.get("start", 0) for p in table.get("partitions", [])), default=2048)
        if first < 2048:
            raise AixsmitError(f"{program}: the first partition of {boot_disk} starts at sector {first}: no room "
                               f"for GRUB before it (1 MB is needed){HINT}")
    else:
        raise AixsmitError(f"{program}: {boot_disk} has no partition table sfdisk can read: GRUB cannot be "
                           f"installed on it{HINT}")


def mounted_parts(disk: str) -> list[tuple[str, str]]:
    """(partition, mount point) for each mounted partition of ``disk`` (and the disk itself)."""
    from ..fs.mounts import read_mountinfo

    name = os.path.basename(os.path.realpath(disk))
    devs = {}
    base = f"/sys/class/block/{name}"
    for entry in [name] + (sorted(os.listdir(base)) if os.path.isdir(base) else []):
        try:
            with open(f"/sys/class/block/{entry}/dev") as f:
                devs[f.read().strip()] = f"/dev/{entry}"
        except OSError:
            continue
    return [(devs[m.dev], m.path) for m in read_mountinfo() if m.dev in devs]


@contextmanager
def chroot(target: str, targets, steps):
    """Yield a function running argv in a chroot of ``target`` (its output shown, a failure raised)."""
    binds: list[str] = []
    links: list[str] = []
    made_dirs: list[str] = []
    try:
        for d in BINDS:
            path = os.path.join(target, d)
            if not steps.dry_run:
                try:
                    inroot.makedirs_in(target, d)
                    path = inroot.real_dir(target, d)
                except OSError as exc:
                    raise AixsmitError(f"{steps.program}: cannot bind /{d} into the clone: {target}/{d}: "
                                       f"{exc.strerror} (a link in the image is never followed for a mount)")
            steps.run(["mount", "--bind", f"/{d}", path])
            binds.append(path)
        missing = [t for t in targets if not os.path.lexists(f"/dev/disk/by-uuid/{t.uuid}")]
        if missing:
            steps.say("This host has no /dev/disk/by-uuid link for " + ", ".join(t.device for t in missing)
                      + ": making them for the chroot (removed afterwards), so GRUB names the file systems by UUID.")
        if not steps.dry_run:
            for d in ("/dev/disk", "/dev/disk/by-uuid"):
                if not os.path.isdir(d):
                    os.mkdir(d, 0o755)
                    made_dirs.append(d)
            for t in missing:
                link = f"/dev/disk/by-uuid/{t.uuid}"
                os.symlink(os.path.relpath(os.path.realpath(t.device), "/dev/disk/by-uuid"), link)
                links.append(link)
        yield lambda argv, **kw: steps.run(["chroot", target, *argv], env=CHROOT_ENV, **kw)
    finally:
        for link in links:
            try:
                os.unlink(link)
            except OSError:
                pass
        for d in reversed(made_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        for path in reversed(binds):
            res = steps.run(["umount", "--", path], check=False)
            if res is not None and res.returncode != 0:
                steps.run(["umount", "--lazy", "--", path], check=False)


def initramfs_reason(target: str, present: set[str], read) -> str:
    """Why the clone's initramfs must be made again ("" when the source's serves): it holds only
    the old machine's drivers, or names the old machine's devices."""
    if "./usr/bin/dracut" in present or "./usr/sbin/dracut" in present:
        return "dracut makes host-only images by default"
    if "./usr/bin/mkinitcpio" in present:
        return "mkinitcpio's autodetect hook keeps only the old machine's modules"
    conf = (read("etc/initramfs-tools/initramfs.conf") or "")
    for name in ("resume", "driver-policy"):
        conf += "\n" + (read(f"etc/initramfs-tools/conf.d/{name}") or "")
    settings = dict(l.strip().split("=", 1) for l in conf.splitlines() if "=" in l and not l.lstrip().startswith("#"))
    if settings.get("MODULES", "most").strip('"') == "dep":
        return "MODULES=dep: the initramfs holds only the old machine's drivers"
    if settings.get("RESUME", "none").strip('"') not in ("", "none"):
        return "it resumes from a swap device"
    crypt = read("etc/crypttab") or ""
    if any(l.strip() and not l.lstrip().startswith("#") for l in crypt.splitlines()):
        return "it unlocks encrypted devices (crypttab)"
    return ""


def reset_identity(target: str, steps, read, write, new_ssh_keys: bool) -> list[str]:
    """Reset what identifies the source machine; returns what was reset, in words."""
    done = []
    if read("etc/machine-id") is not None:
        steps.say("Resetting /etc/machine-id (empty: systemd makes a new one at first boot).")
        if not steps.dry_run:
            write("etc/machine-id", "")
        done.append("/etc/machine-id")
    try:
        st = os.lstat(os.path.join(target, "var/lib/dbus/machine-id"))
        if not os.path.islink(os.path.join(target, "var/lib/dbus/machine-id")) and st:
            steps.say("Removing /var/lib/dbus/machine-id (D-Bus takes the new /etc/machine-id).")
            if not steps.dry_run:
                inroot.remove_in(target, "var/lib/dbus/machine-id")
            done.append("/var/lib/dbus/machine-id")
    except OSError:
        pass
    config = read("var/cache/debconf/config.dat")
    if config and "Name: grub-pc/install_devices\n" in config:
        out, inside, was = [], False, ""
        for line in config.split("\n"):
            if line.startswith("Name: "):
                inside = line == "Name: grub-pc/install_devices"
            elif inside and line.startswith("Value:"):
                was = line[6:].strip()
                line = "Value: "
            out.append(line)
        steps.say("Clearing GRUB's recorded install device in debconf (grub-pc/install_devices"
                  + (f", was {was}" if was else "") + "): the source's disk is not this machine's.")
        if not steps.dry_run:
            write("var/cache/debconf/config.dat", "\n".join(out))
        done.append("GRUB's install device in debconf")
    if new_ssh_keys:
        steps.say("Removing the source's SSH host keys (/etc/ssh/ssh_host_*).")
        if not steps.dry_run:
            try:
                fd = inroot.open_in(target, "etc/ssh", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    names = [n for n in os.listdir(fd) if n.startswith("ssh_host_")]
                finally:
                    os.close(fd)
            except FileNotFoundError:
                names = []
            for n in names:
                inroot.remove_in(target, f"etc/ssh/{n}")
        done.append("SSH host keys")
    return done


def make_bootable(target: str, targets, contents, boot_disk: str, steps, *, initramfs: str = "auto",
                  new_ssh_keys: bool = False, bios: bool = True, efi: bool = False) -> None:
    """Reset the identity, make the initramfs when needed, install GRUB (``bios``: onto
    ``boot_disk``; ``efi``: into the ESP mounted on /boot/efi, at its own path and at the
    fallback path) and write its configuration for the new root UUID, then check that it names it."""
    from .clone import read_text, write_text

    program = steps.program
    read = lambda p: read_text(target, p, program)  # noqa: E731
    write = lambda p, text: write_text(target, p, text, program)  # noqa: E731
    present = contents.present
    reset = reset_identity(target, steps, read, write, new_ssh_keys)
    tool = next((argv for probe, argv in INITRAMFS_TOOLS if probe in present), None)
    reason = "asked for (--initramfs yes)" if initramfs == "yes" else \
        "" if initramfs == "no" or tool is None else initramfs_reason(target, present, read)
    root = next(t for t in targets if t.mount_point == "/")
    with chroot(target, targets, steps) as run_in:
        if reason and tool:
            steps.say(f"Making the initramfs again with the image's own {tool[0]}: {reason}.")
            run_in(tool)
        elif tool:
            steps.say(f"The image's initramfs is kept: nothing in it depends on the old machine "
                      f"({tool[0]} not needed; --initramfs yes makes it anyway).")
        if bios:
            steps.say(f"Installing the image's GRUB (BIOS, i386-pc) onto {boot_disk}.")
            run_in(["grub-install", "--target=i386-pc", boot_disk])
        if efi:
            esp = next(t for t in targets if t.mount_point == disks.ESP_MOUNT)
            efi_argv = ["grub-install", "--target=x86_64-efi", f"--efi-directory={disks.ESP_MOUNT}", "--no-nvram"]
            steps.say(f"Installing the image's GRUB (EFI, x86_64-efi) into the EFI system partition {esp.device} "
                      f"({disks.ESP_MOUNT}), without NVRAM entries: they belong to the machine that boots it.")
            run_in(efi_argv)
            steps.say("Installing it again at the fallback path EFI/BOOT/BOOTX64.EFI, which firmware boots "
                      "without an NVRAM entry.")
            run_in(efi_argv + ["--removable"])
        steps.say(f"Writing GRUB's configuration for the new root file system (UUID {root.uuid}).")
        run_in(["update-grub"] if "./usr/sbin/update-grub" in present else ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"])
        if new_ssh_keys and "./usr/bin/ssh-keygen" in present:
            run_in(["ssh-keygen", "-A"])
    if not steps.dry_run:
        cfg = read("boot/grub/grub.cfg") or ""
        if f"root=UUID={root.uuid}" not in cfg:
            named = sorted({w for w in cfg.split() if w.startswith("root=")})
            raise AixsmitError(f"{program}: GRUB's configuration in the clone does not name the new root "
                               f"(root=UUID={root.uuid}; it has {', '.join(named) or 'no root='}): the clone would "
                               f"not boot, or would boot the source.")
    if reset:
        steps.say("Reset for the new machine: " + ", ".join(reset) + ".")
    how = [f"GRUB for BIOS on {boot_disk}"] if bios else []
    if efi:
        esp = next(t for t in targets if t.mount_point == disks.ESP_MOUNT)
        how.append(f"GRUB for EFI on {esp.device} (EFI/BOOT/BOOTX64.EFI)")
    steps.say(f"The clone boots by {' and by '.join(how)}: root=UUID={root.uuid}.")
