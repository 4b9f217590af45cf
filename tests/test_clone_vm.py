"""Proof that a clone boots: a real Debian system is backed up with mksysb, cloned onto one blank
disk of another size from the menus (Install a System Image onto Other Disks, in tmux; the
dry run with ``clone --disk`` on the command line), and the clone is booted in QEMU.

The oracle is the booted machine itself: a marker service prints its host name and every file
system it mounted with the UUID; the clone must show the new host name and only the new UUIDs
(with the source disk attached, read-only, so a clone whose GRUB looked for the old root UUID
would visibly boot the source). The source disk must be byte for byte unchanged by the clone.
The same for a system that boots by EFI, under OVMF, with ``clone --disk`` on the command line.
Each phase's time is printed (pytest -s) and written to $AIXSMIT_VM_TIMINGS when set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vmsystem
from aixsmit.backup import disk
from conftest import IS_ROOT, aixsmit

pytestmark = [
    # About 5 minutes with the system cached, 4 more to build it; a machine loaded several times over
    # has taken 7 minutes for one boot.
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not IS_ROOT, reason="needs root: loop devices, mounts, chroot"),
    pytest.mark.skipif(bool(vmsystem.tools_missing()),
                       reason=f"not installed: {' '.join(vmsystem.tools_missing())} (scripts/install-deps)"),
]


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


class Phases:
    def __init__(self):
        self.times: dict[str, float] = {}
        self.start = time.monotonic()

    def __call__(self, name: str):
        phases = self

        class Timer:
            def __enter__(self):
                self.t = time.monotonic()

            def __exit__(self, *exc):
                phases.times[name] = round(time.monotonic() - self.t, 1)
                print(f"phase {name}: {phases.times[name]} s", flush=True)

        return Timer()

    def begin(self, name: str) -> None:
        self.times[name] = time.monotonic()

    def end(self, name: str) -> None:
        self.times[name] = round(time.monotonic() - self.times[name], 1)
        print(f"phase {name}: {self.times[name]} s", flush=True)

    def save(self) -> None:
        self.times["total"] = round(time.monotonic() - self.start, 1)
        print("phases:", json.dumps(self.times), flush=True)
        if os.environ.get("AIXSMIT_VM_TIMINGS"):
            with open(os.environ["AIXSMIT_VM_TIMINGS"], "a") as f:
                f.write(json.dumps(self.times) + "\n")


def clone_from_the_menus(env: dict, tmp_path, image, disk: str, target, hostname: str) -> str:
    """System Backup Manager > Install a System Image onto Other Disks, typed in a real terminal:
    the image, the blank disk, the target, the host name, "Only show the plan?" set to no, Enter,
    ARE YOU SURE, until COMMAND STATUS says Command: OK. Returns the command's whole output."""
    from test_tmux_e2e import Tmux, newest_job

    term = {k: v for k, v in env.items() if k.startswith("AIXSMIT_")}
    term.update(HOME=str(tmp_path), TERM="xterm-256color", PATH=os.environ["PATH"], LANG="C.UTF-8")
    t = Tmux(f"aixsmit-clone-{os.getpid()}", f"{shlex.quote(sys.executable)} -m aixsmit clone", term)
    try:
        t.wait_for("Install a System Image onto Other Disks")
        t.wait_for("[Entry Fields]")
        time.sleep(2)  # the first keys of a starting app can be lost under load

        def key(*keys):  # one at a time, given time to land: the machine is loaded
            for k in keys:
                t.keys(k)
                time.sleep(0.3)

        t.type(str(image))
        key("Down")
        t.type(disk)
        key("Down", "Down", "C-u")
        t.type(str(target))
        key("Down")
        t.type(hostname)
        key(*["Down"] * 5, "Tab")  # to "Only show the plan?", and yes -> no
        end = time.monotonic() + 10
        while not re.search(r"Only show the plan\?\s+no", t.screen()) and time.monotonic() < end:
            time.sleep(0.2)
        s = t.screen()
        assert re.search(r"Only show the plan\?\s+no", s) and hostname in s and "[/mnt/aixsmit-clone" not in s, s
        t.keys("Enter")
        t.wait_for("ARE YOU SURE")
        t.keys("Enter")
        t.wait_for("COMMAND STATUS")
        end = time.monotonic() + 400
        while time.monotonic() < end and not re.search(r"Command: (OK|failed)", t.screen()):
            time.sleep(1)
        assert "Command: OK" in t.screen(), t.screen()
        job = newest_job(dict(os.environ, **term))
        t.keys("F10")
    finally:
        t.kill()
    return Path(job["log"]).read_text(errors="replace")


def vm_env(tmp_path) -> dict:
    (tmp_path / "aixsmit.yaml").write_text("# test configuration\n")
    return dict(os.environ, AIXSMIT_STATE_DIR=str(tmp_path / "state"), AIXSMIT_CONFIG=str(tmp_path / "aixsmit.yaml"),
                AIXSMIT_HOST="linux")


def source_image(tmp_path, phase: Phases, env: dict, disks: list, firmware: str = "bios", prefix: str = ""):
    """The system for ``firmware`` (cached), installed on a 1.5 GB source disk (added to
    ``disks``), and its mksysb: returns (source disk, mount point -> UUID, image)."""
    mnt = tmp_path / "mnt"
    with phase(f"{prefix}rootfs (mmdebstrap, or the cache)"):
        try:
            tree = vmsystem.rootfs(firmware)
        except vmsystem.Unreachable as exc:
            pytest.skip(str(exc))
    with phase(f"{prefix}source disk"):
        src = vmsystem.Disk(tmp_path / "source.raw", 1536)
        disks.append(src)
        uuids = vmsystem.make_source(src, tree, mnt, "aixsrc", firmware=firmware)
    with phase(f"{prefix}mksysb"):
        # mksysb writes /image.data into the system it saves, as AIX's mkszfile does: the
        # source is mounted read-write for it (the clone's fstab options come from the
        # source's fstab either way; tests/test_clone_disk.py checks a read-only source).
        subprocess.run(["mount", src.part(2), mnt], check=True)
        subprocess.run(["mount", src.part(3), mnt / "home"], check=True)
        image = tmp_path / "aixsrc.mksysb"
        r = aixsmit("cmd", "mksysb", "-i", "--root", mnt, image, env=env)
        subprocess.run(["umount", "-R", str(mnt)], check=True)
        assert r.returncode == 0, r.stdout + r.stderr
    return src, uuids, image


def clean_up(tmp_path, booting, disks: list, phase: Phases) -> None:
    """Whatever happened: unmount, stop the machine, free the loop disks, save the timings."""
    subprocess.run(["umount", "-R", str(tmp_path / "mnt")], capture_output=True)
    subprocess.run(["umount", "-R", str(tmp_path / "target")], capture_output=True)
    if booting is not None and booting.poll() is None:
        booting.kill()
        booting.wait()
    for d in disks:
        d.detach()
    phase.save()


def test_clone_onto_a_blank_disk_boots(tmp_path):
    phase = Phases()
    env = vm_env(tmp_path)
    disks: list[vmsystem.Disk] = []
    booting = None
    try:
        src, uuids, image = source_image(tmp_path, phase, env, disks)
        source_sum = sha256(src.path)
        # The source boots (on a snapshot: its disk stays as it was) while the clone is made.
        booting = vmsystem.start_vm([(src.path, False)], tmp_path / "source-console.log", snapshot=True)
        phase.begin("source boot")
        new = vmsystem.Disk(tmp_path / "clone.raw", 1152)  # another size: smaller than the source
        disks.append(new)
        target = tmp_path / "target"
        dry = aixsmit("cmd", "clone", "-f", image, "--disk", new.dev, "--target", target, "--hostname", "aixcopy",
                      "--dry-run", env=env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        for cmd in ("sfdisk", "mkfs.ext4", "mount -t ext4", "grub-install --target=i386-pc " + new.dev,
                    "update-grub", "mount --bind /dev"):
            assert cmd in dry.stdout, (cmd, dry.stdout)
        assert subprocess.run(["blkid", "-p", new.dev], capture_output=True).returncode == 2  # still blank
        with phase("clone (from the menus, in tmux)"):
            out = clone_from_the_menus(env, tmp_path, image, new.dev, target, "aixcopy")
        (tmp_path / "clone.out").write_text(out)
        assert "Reset for the new machine: /etc/machine-id" in out
        assert not [m for m in open("/proc/self/mountinfo", errors="replace").read().splitlines() if str(target) in m]  # all unbound
        assert not os.path.exists(new.part(2))  # the partition devices clone added are gone again
        subprocess.run(["partx", "-a", new.dev], check=True)
        new_uuids = {mp: vmsystem.uuid_of(new.part(n)) for mp, n in (("/", 2), ("/home", 3))}
        assert not set(new_uuids.values()) & set(uuids.values())
        subprocess.run(["partx", "-d", new.dev], capture_output=True)

        seen = vmsystem.wait_marker(booting, tmp_path / "source-console.log")
        phase.end("source boot")  # from its start, beside the clone
        assert seen["hostname"] == "aixsrc" and seen["machine-id"] == vmsystem.SOURCE_MACHINE_ID
        assert {mp: m[0] for mp, m in seen["mounts"].items()} == uuids, seen

        with phase("clone boot"):
            # The clone first, the source attached read-only behind it.
            booting = vmsystem.start_vm([(new.path, False), (src.path, True)], tmp_path / "clone-console.log")
            seen = vmsystem.wait_marker(booting, tmp_path / "clone-console.log")
        assert seen["hostname"] == "aixcopy"
        assert len(seen["machine-id"]) == 32 and seen["machine-id"] != vmsystem.SOURCE_MACHINE_ID, seen
        assert {mp: m[0] for mp, m in seen["mounts"].items()} == new_uuids, seen
        assert seen["mounts"]["/"][1] == "/dev/vda2"
        # The source's fstab options.
        assert "rw" in seen["mounts"]["/"][2].split(",") and "errors=remount-ro" in seen["mounts"]["/"][2], seen
        assert "nodev" in seen["mounts"]["/home"][2].split(","), seen
        assert sha256(src.path) == source_sum, "the source disk changed"
    finally:
        clean_up(tmp_path, booting, disks, phase)


@pytest.mark.skipif(bool(vmsystem.tools_missing("efi")),
                    reason=f"not installed: {' '.join(vmsystem.tools_missing('efi'))} (scripts/install-deps)")
def test_efi_clone_onto_a_blank_disk_boots(tmp_path):
    """The same proof for a system that boots by EFI (GRUB for EFI only, an ESP on /boot/efi),
    booted with OVMF and no boot entries in its variables: the clone's GRUB must be at the
    fallback path. The image holds no /boot/efi (this host cannot mount FAT, and a system saved
    with its ESP unmounted is one clone must handle): clone makes a new ESP from the fstab's
    line, and the clone mounts it by its new UUID. The command line is enough here: the menus
    are proven by the BIOS test."""
    phase = Phases()
    env = vm_env(tmp_path)
    disks: list[vmsystem.Disk] = []
    booting = None
    try:
        src, uuids, image = source_image(tmp_path, phase, env, disks, firmware="efi", prefix="efi ")
        source_sum = sha256(src.path)
        # The source boots (on a snapshot: its disk stays as it was) while the clone is made.
        booting = vmsystem.start_vm([(src.path, False)], tmp_path / "source-console.log", snapshot=True, firmware="efi")
        phase.begin("efi source boot")
        new = vmsystem.Disk(tmp_path / "clone.raw", 1152)  # another size: smaller than the source
        disks.append(new)
        target = tmp_path / "target"
        with phase("efi clone (command line)"):
            args = ["cmd", "clone", "-f", image, "--disk", new.dev, "--target", target, "--hostname", "aixcopy"]
            dry = aixsmit(*args, "--dry-run", env=env)
            assert dry.returncode == 0, dry.stdout + dry.stderr
            assert subprocess.run(["blkid", "-p", new.dev], capture_output=True).returncode == 2  # still blank
            r = aixsmit(*args, env=env)
            assert r.returncode == 0, r.stdout + r.stderr
        (tmp_path / "clone.out").write_text(r.stdout)
        for step in ("grub-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram --removable",
                     f"mkfs.vfat -F 32 -n EFI {new.dev}p1", f"mcopy -s -m -Q -D o -i {new.dev}p1", "update-grub"):
            assert step in dry.stdout and step in r.stdout, (step, r.stdout)
        assert "i386-pc" not in r.stdout
        mountinfo = open("/proc/self/mountinfo", errors="replace").read()
        assert not [m for m in mountinfo.splitlines() if str(target) in m]  # all unbound
        table = json.loads(subprocess.run(["sfdisk", "--json", new.dev], capture_output=True, text=True,
                                          check=True).stdout)["partitiontable"]
        assert [p["type"] for p in table["partitions"]] == [disk.ESP, disk.LINUX_FS, disk.LINUX_FS]
        subprocess.run(["partx", "-a", new.dev], check=True)
        new_uuids = {mp: vmsystem.uuid_of(new.part(n)) for mp, n in (("/boot/efi", 1), ("/", 2), ("/home", 3))}
        subprocess.run(["partx", "-d", new.dev], capture_output=True)
        assert not set(new_uuids.values()) & set(uuids.values())

        seen = vmsystem.wait_marker(booting, tmp_path / "source-console.log")
        phase.end("efi source boot")  # from its start, beside the clone
        assert seen["hostname"] == "aixsrc"
        assert {mp: m[0] for mp, m in seen["mounts"].items()} == uuids, seen

        with phase("efi clone boot"):
            booting = vmsystem.start_vm([(new.path, False), (src.path, True)], tmp_path / "clone-console.log",
                                        firmware="efi")
            seen = vmsystem.wait_marker(booting, tmp_path / "clone-console.log")
        assert seen["hostname"] == "aixcopy"
        assert len(seen["machine-id"]) == 32 and seen["machine-id"] != vmsystem.SOURCE_MACHINE_ID, seen
        assert {mp: m[0] for mp, m in seen["mounts"].items()} == new_uuids, seen
        assert seen["mounts"]["/"][1] == "/dev/vda2" and seen["mounts"]["/boot/efi"][1] == "/dev/vda1", seen
        assert "fmask=0077" in seen["mounts"]["/boot/efi"][2], seen  # the source's fstab options (umask=0077)
        assert sha256(src.path) == source_sum, "the source disk changed"
    finally:
        clean_up(tmp_path, booting, disks, phase)
