"""A small real Debian system on a disk image, and QEMU to boot disks and read what they say.

The system: ``mmdebstrap`` minbase of Debian 12 with a kernel, initramfs-tools, GRUB for BIOS
or for EFI (the firmware), systemd and udev, as a folder (built once per firmware, cached under
CACHE by a key of the recipe; a cached build older than MAX_AGE_DAYS is built again, so the
packages are never older than that). A disk: GPT with a BIOS boot partition (BIOS) or an EFI
system partition on /boot/efi (EFI), ``/`` and ``/home`` on ext4, all mounted by UUID, GRUB
installed, and a marker service that prints the host name and the mounted file systems with
their UUIDs on the serial console. EFI machines boot with OVMF (its variables copied per boot).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("AIXSMIT_TEST_CACHE", "/var/cache/aixsmit-test"))
MAX_AGE_DAYS = 7
# By firmware: GRUB for BIOS (grub-pc), or for EFI (grub-efi-amd64, and fsck.vfat for the ESP).
PACKAGES = {"bios": "linux-image-amd64,initramfs-tools,grub-pc,systemd-sysv,udev,e2fsprogs",
            "efi": "linux-image-amd64,initramfs-tools,grub-efi-amd64,systemd-sysv,udev,e2fsprogs,dosfstools"}
# Drivers a virtual machine with virtio disks never loads: left out to keep the image small.
TRIM = ("drivers/gpu", "drivers/net", "drivers/media", "drivers/infiniband", "drivers/staging", "sound", "net",
        "drivers/usb", "drivers/iio", "drivers/bluetooth", "drivers/hid", "drivers/input")


def recipe(firmware: str = "bios") -> list[str]:
    """mmdebstrap's options for the system that boots by ``firmware`` ("bios" or "efi")."""
    return ["--variant=minbase", "--mode=root", f"--include={PACKAGES[firmware]}", *RECIPE]


RECIPE = [
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--customize-hook=rm -rf " + " ".join(f'"$1"/usr/lib/modules/*/kernel/{d}' for d in TRIM) + ' "$1"/usr/lib/firmware',
]
ESP_MB = 64  # the source's EFI system partition
OVMF = ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")  # Debian's ovmf: code, variables
MARKER = "AIXSMIT-MARKER"
SOURCE_MACHINE_ID = "0123456789abcdef0123456789abcdef"
MARKER_SCRIPT = f"""#!/bin/sh
# Says who this machine is and what it mounted on the serial console (every line marked: the
# console is shared with systemd).
{{
echo "{MARKER} hostname=$(hostname)"
echo "{MARKER} machine-id=$(cat /etc/machine-id)"
findmnt -rn -t ext4,xfs,btrfs,vfat -o TARGET,UUID,SOURCE,OPTIONS | sed 's/^/{MARKER} mount /'
echo "{MARKER} end"
}} > /dev/ttyS0 2>&1
"""
# As early as the file systems are mounted (not after basic.target): boots under TCG are slow.
MARKER_UNIT = """[Unit]
Description=aixsmit test marker: host name and mounted file systems
DefaultDependencies=no
Requires=local-fs.target
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/aixsmit-marker

[Install]
WantedBy=sysinit.target
"""
GRUB_DEFAULTS = """GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 systemd.show_status=false"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
"""


class Unreachable(Exception):
    """Debian's packages cannot be had here (no network to the mirror)."""


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True, **kw)


def rootfs(firmware: str = "bios") -> Path:
    """The system for ``firmware`` as a folder: from the cache, or built now (about 2-4 minutes)."""
    argv = recipe(firmware)
    key = hashlib.sha256(json.dumps([SUITE, MIRROR, argv]).encode()).hexdigest()[:16]
    folder = CACHE / (f"rootfs-{SUITE}-{key}" if firmware == "bios" else f"rootfs-{SUITE}-{firmware}-{key}")
    tree, stamp = folder / "rootfs", folder / "built"
    if stamp.exists() and time.time() - stamp.stat().st_mtime < MAX_AGE_DAYS * 86400:
        return tree
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"rootfs.partial-{os.getpid()}"  # no .tar: mmdebstrap writes a folder
    proc = subprocess.run(["mmdebstrap", *argv, SUITE, str(partial), MIRROR], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        if re.search(r"Failed to fetch|Could not resolve|Temporary failure resolving|Unable to connect", proc.stderr):
            raise Unreachable(f"{MIRROR} cannot be reached: the system cannot be built")
        raise RuntimeError("mmdebstrap failed: " + proc.stderr[-2000:])
    stamp.unlink(missing_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    os.rename(partial, tree)
    stamp.touch()
    return tree


class Disk:
    """A raw disk image attached to a loop device, its partitions made with partx."""

    def __init__(self, path: Path, mb: int):
        self.path = path
        with open(path, "wb") as f:
            f.truncate(mb << 20)
        self.dev = sh("losetup", "-f", "--show", path).stdout.strip()

    def part(self, n: int) -> str:
        return f"{self.dev}p{n}"

    def detach(self) -> None:
        subprocess.run(["partx", "-d", self.dev], capture_output=True)
        subprocess.run(["losetup", "-d", self.dev], capture_output=True)


def uuid_of(dev: str) -> str:
    return sh("blkid", "-p", "-o", "value", "-s", "UUID", dev).stdout.strip()


def make_source(disk: Disk, tree: Path, mnt: Path, hostname: str, firmware: str = "bios") -> dict[str, str]:
    """Install the system onto ``disk`` (GPT: BIOS boot 1 MiB or an ESP of ESP_MB, / 60%, /home
    the rest) and make it boot by ``firmware``.

    Returns mount point -> file system UUID. GRUB is installed with the system's own
    grub-install and update-grub in a chroot (the product's chroot helper, whose binds and
    /dev/disk/by-uuid links this needs on a host without udev); for EFI into the ESP at the
    fallback path only (no NVRAM here), staged and copied onto the FAT as the clone does (this
    host's kernel may have no vfat).
    """
    from aixsmit.backup import boot
    from aixsmit.backup import disk as disks
    from aixsmit.backup.clone import Steps, Target

    size = os.path.getsize(disk.path) >> 20
    first = 1 if firmware == "bios" else ESP_MB
    root_mb = (size - 2 - first) * 6 // 10
    kind = disks.BIOS_BOOT if firmware == "bios" else disks.ESP
    script = (f"label: gpt\nstart=2048, size={first * 2048}, type={kind}\n"
              f"size={root_mb * 2048}, type=linux\ntype=linux\n")
    sh("sfdisk", "-q", disk.dev, input=script)
    sh("partx", "-a", disk.dev)
    uuids = {}
    if firmware == "efi":
        sh(*disks.fat_mkfs_argv(disk.part(1)))
        uuids["/boot/efi"] = uuid_of(disk.part(1))
    for mp, n in (("/", 2), ("/home", 3)):
        sh("mkfs.ext4", "-q", "-F", "-L", "root" if mp == "/" else "home", disk.part(n))
        uuids[mp] = uuid_of(disk.part(n))
    mnt.mkdir(parents=True, exist_ok=True)
    sh("mount", disk.part(2), mnt)
    try:
        (mnt / "home").mkdir()
        sh("mount", disk.part(3), mnt / "home")
        sh("cp", "-a", f"{tree}/.", mnt)
        (mnt / "etc/fstab").write_text(f"UUID={uuids['/']} / ext4 errors=remount-ro 0 1\n"
                                       f"UUID={uuids['/home']} /home ext4 defaults,nodev 0 2\n"
                                       + (f"UUID={uuids['/boot/efi']} /boot/efi vfat umask=0077 0 1\n"
                                          if firmware == "efi" else ""))
        (mnt / "etc/hostname").write_text(hostname + "\n")
        (mnt / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n")
        (mnt / "etc/default/grub").write_text(GRUB_DEFAULTS)
        (mnt / "usr/local/sbin/aixsmit-marker").write_text(MARKER_SCRIPT)
        (mnt / "usr/local/sbin/aixsmit-marker").chmod(0o755)
        (mnt / "etc/systemd/system/aixsmit-marker.service").write_text(MARKER_UNIT)
        wants = mnt / "etc/systemd/system/sysinit.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "aixsmit-marker.service").symlink_to("/etc/systemd/system/aixsmit-marker.service")
        (mnt / "etc/machine-id").write_text(SOURCE_MACHINE_ID + "\n")
        (mnt / "home/alice").mkdir()
        (mnt / "home/alice/notes.txt").write_text("user data on the source\n")
        log: list[str] = []
        steps = Steps(lambda line, stream: log.append(line), dry_run=False, program="test")
        targets = [Target(mp, disk.part(n), "ext4", 0, 0, 0, "", uuid=uuids[mp]) for mp, n in (("/", 2), ("/home", 3))]
        if firmware == "efi":
            (mnt / "boot/efi").mkdir(parents=True, exist_ok=True)
            sh(*disks.fat_stage_argv(disk.part(1), mnt / "boot/efi"))
            targets.append(Target("/boot/efi", disk.part(1), "vfat", 0, 0, 0, "", uuid=uuids["/boot/efi"]))
        with boot.chroot(str(mnt), targets, steps) as run_in:
            if firmware == "bios":
                run_in(["grub-install", "--target=i386-pc", disk.dev])
            else:
                run_in(["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--no-nvram", "--removable"])
            run_in(["update-grub"])
        if firmware == "efi":
            staged = mnt / "boot/efi"
            sh(*disks.fat_copy_argv(disk.part(1), [str(p) for p in sorted(staged.iterdir())]), env=disks.MTOOLS_ENV)
            sh("umount", staged)
    finally:
        subprocess.run(["umount", "-R", str(mnt)], capture_output=True)
    return uuids


def start_vm(disks: list[tuple[Path, bool]], log: Path, snapshot: bool = False, firmware: str = "bios") -> subprocess.Popen:
    """Boot the first disk in QEMU (TCG, serial console on ``log``), the others attached behind
    it, read-only where asked; ``snapshot`` leaves every disk as it was (writes go to a
    temporary file). ``firmware`` "efi": OVMF, its code read-only, its variables a fresh copy
    beside ``log`` (no boot entries: the firmware boots the fallback path)."""
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "2", "-nodefaults", "-nographic",
            "-serial", "mon:stdio", "-no-reboot"] + (["-snapshot"] if snapshot else [])
    if firmware == "efi":
        code, vars_ = OVMF
        copy = log.with_suffix(".vars.fd")
        shutil.copyfile(vars_, copy)
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={copy}"]
    for i, (path, readonly) in enumerate(disks):
        argv += ["-drive", f"file={path},format=raw,if=virtio,index={i}" + (",readonly=on" if readonly else "")]
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process ends, however it ends (a killed
    or timed-out pytest skips every finally), so no machine is left running with its disks."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def marker(log: Path) -> list[str] | None:
    """The marker's lines on the console so far, once its end is there."""
    text = log.read_bytes().decode("utf-8", "replace").replace("\r", "")
    said = [m.group(1).strip() for m in re.finditer(rf"{MARKER} (.*)", text)]
    return said if "end" in said else None


def wait_marker(proc: subprocess.Popen, log: Path, timeout: float = 600) -> dict:
    """Wait for the marker, then stop the machine (nothing of it is needed after that).

    Returns {"hostname": ..., "mounts": {mount point: (uuid, source, options)}}; raises AssertionError
    with the console's last lines when the marker does not come in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    said = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            said = marker(log)
            if said:
                break
            time.sleep(0.5)
        said = said or marker(log)
    finally:
        proc.kill()
        proc.wait()
    if not said:
        text = log.read_bytes().decode("utf-8", "replace").replace("\r", "")
        raise AssertionError(f"no marker on the console within {timeout:.0f} s; its end:\n" + text[-3000:])
    mounts = {}
    for line in said:
        parts = line.split()
        if parts[0] == "mount" and len(parts) == 5:
            mounts[parts[1]] = (parts[2], parts[3], parts[4])
    facts = dict(line.split("=", 1) for line in said if "=" in line and not line.startswith("mount "))
    return {"hostname": facts.get("hostname", ""), "machine-id": facts.get("machine-id", ""), "mounts": mounts}


def tools_missing(firmware: str = "bios") -> list[str]:
    tools = ("mmdebstrap", "qemu-system-x86_64", "sfdisk", "partx", "mkfs.ext4")
    if firmware == "efi":
        tools += ("mkfs.vfat", "mcopy")
    missing = [t for t in tools if shutil.which(t) is None]
    if firmware == "efi" and not all(os.path.exists(f) for f in OVMF):
        missing.append(f"{OVMF[0]} (ovmf)")
    return missing
