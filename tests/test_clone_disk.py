"""clone --disk without booting anything: the partition plan, the fstab rewrite, the refusals
before anything is written, the AIX command, and the menu's dialog."""

from __future__ import annotations

import subprocess

import pytest

from aixsmit.backup import clone, disk
from aixsmit.errors import AixsmitError
from conftest import aixsmit, needs_root, run

MiB = 1 << 20



def add_partitions(dev: str) -> None:
    """The kernel's partitions of the loop disk ``dev``, as its table now says: those a reused
    loop number still had from an earlier disk are dropped first (partx -a refuses to add over them)."""
    subprocess.run(["partx", "-d", dev], capture_output=True)
    run("partx", "-a", dev)

def test_layout_fits_the_disk():
    fss = [("/", 500 * MiB, 900 * MiB), ("/home", 20 * MiB, 500 * MiB)]
    big = disk.layout("/dev/sdb", 4096 * MiB, fss)  # room for both as they were
    assert [(p.number, p.mount_point, p.size // MiB, p.device) for p in big] == [
        (1, "", 1, "/dev/sdb1"), (2, "/", 900, "/dev/sdb2"), (3, "/home", 500, "/dev/sdb3")]
    small = disk.layout("/dev/loop7", 1024 * MiB, fss)  # shrunk: what each needs plus a share
    assert small[1].device == "/dev/loop7p2" and 500 * MiB <= small[1].size < 900 * MiB
    assert sum(p.size for p in small) <= 1024 * MiB - 2 * MiB
    with pytest.raises(AixsmitError, match="0512-029"):
        disk.layout("/dev/sdb", 400 * MiB, fss)
    fixed = disk.parse_layout("/ 600M\n/home rest  # the rest\n", ["/", "/home"], "layout")
    assert fixed == {"/": 600 * MiB, "/home": None}
    assert disk.layout("/dev/sdb", 2048 * MiB, fss, fixed)[1].size == 600 * MiB
    with pytest.raises(AixsmitError, match="no size for /home"):
        disk.parse_layout("/ 1G\n", ["/", "/home"], "layout")
    script = disk.sfdisk_script(big)
    assert script.startswith("label: gpt\nstart=2048, type=21686148-6449-6E6F-744E-656564454649, size=2048")
    assert script.splitlines()[-1] == 'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="/home"'  # to the end


def test_fstab_from_the_source_fstab():
    src = ("# /etc/fstab\nUUID=old-root / ext4 errors=remount-ro 0 1\n/dev/vda3 /home ext4 defaults,nodev 0 2\n"
           "UUID=swap none swap sw 0 0\n")
    targets = [clone.Target("/", "/dev/x2", "ext4", 0, 0, 0, "ro,relatime", uuid="new-root"),
               clone.Target("/home", "/dev/x3", "ext4", 0, 0, 0, "rw", uuid="new-home"),
               clone.Target("/srv", "/dev/x4", "xfs", 0, 0, 0, "ro,noatime", uuid="new-srv")]
    assert clone.fstab_text(src, targets).splitlines() == [
        "# /etc/fstab", "UUID=new-root / ext4 errors=remount-ro 0 1", "UUID=new-home /home ext4 defaults,nodev 0 2",
        "UUID=swap none swap sw 0 0", "UUID=new-srv /srv xfs noatime 0 2"]
    # On another machine the source's swap may not exist: kept, but the boot does not wait for it.
    assert clone.fstab_text(src, targets, other_machine=True).splitlines()[3] == "UUID=swap none swap sw,nofail 0 0"


def test_a_host_name_is_checked():
    for bad in ("a\nb", "-x", "a..b", "x" * 64, "", "a b"):
        r = aixsmit("cmd", "clone", "-f", "/nonexistent", "--disk", "/dev/null", "--target", "/nonexistent",
                    f"--hostname={bad}")
        assert r.returncode == 2 and r.stderr.startswith("clone: --hostname") and len(r.stderr.splitlines()) == 1, bad


def test_aix_runs_alt_disk_mksysb(aix_bin, tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    r = aixsmit("cmd", "clone", "-f", "/backup/sys.mksysb", "--disk", "hdisk1", "--disk", "hdisk2", "--target", "/x")
    assert r.returncode == 0, r.stderr
    r = aixsmit("cmd", "clone", "-f", "/backup/sys.mksysb", "--disk", "hdisk1", "--target", "/x", "--bootlist", "no")
    assert log.read_text().splitlines() == ["alt_disk_mksysb -m /backup/sys.mksysb -d hdisk1 hdisk2",
                                            "alt_disk_mksysb -m /backup/sys.mksysb -d hdisk1 -B"]


def test_menu_builds_the_clone_command():
    from aixsmit.smit import command, model

    dialog = model.load_tree().get("clone")
    values = {f.name: f.default for f in dialog.fields}
    values.update(image="/backup/sys.mksysb", disk="/dev/sdb", hostname="copy")
    argv = command.build(dialog, values, "linux")
    assert argv[:3] == ["aixsmit", "cmd", "clone"] and "--disk" in argv and "/dev/sdb" in argv
    assert "--dry-run" in argv  # the plan first, by default


@needs_root
def test_disk_refusals_before_writing(troot):
    tr = troot
    tr.p("/etc/fstab").write_text("")
    img = tr.base / "sys.mksysb"
    assert aixsmit("cmd", "mksysb", "-i", "--root", tr.path, img, env=tr.env()).returncode == 0
    raw = tr.images / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MiB)
    dev = run("losetup", "-f", "--show", raw).stdout.strip()
    tr.loops.append(dev)
    target = tr.base / "t"
    # A disk holding a partition table is refused without --overwrite; the image has no GRUB.
    run("sfdisk", "-q", dev, input="label: gpt\ntype=linux\n")
    r = aixsmit("cmd", "clone", "-f", img, "--disk", dev, "--target", target, "--no-boot", env=tr.env())
    assert r.returncode == 1 and "already holds a gpt partition table" in r.stderr, r.stderr
    r = aixsmit("cmd", "clone", "-f", img, "--disk", dev, "--target", target, env=tr.env())
    assert r.returncode == 1 and "holds no GRUB" in r.stderr
    r = aixsmit("cmd", "clone", "-f", img, "--disk", dev, "--map", f"/={dev}", "--target", target, env=tr.env())
    assert r.returncode == 2 and "either --disk or --map" in r.stderr
    assert subprocess.run(["sfdisk", "--dump", dev], capture_output=True, text=True).stdout.count("type=") == 1


@needs_root
def test_boot_disk_is_checked_before_writing(troot):
    """With --map, GRUB goes onto the disk holding the partition for /; one it could not embed
    into (a GPT without a BIOS boot partition) is refused before anything is written."""
    from aixsmit.backup import boot

    tr = troot
    raw = tr.images / "gpt.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MiB)
    dev = run("losetup", "-f", "--show", raw).stdout.strip()
    tr.loops.append(dev)
    run("sfdisk", "-q", dev, input="label: gpt\ntype=linux\n")
    add_partitions(dev)
    try:
        assert clone.boot_disk_of(f"{dev}p1") == dev and clone.boot_disk_of(dev) is None
        grub = clone.Contents({}, {"./usr/sbin/grub-install", "./usr/lib/grub/i386-pc"})
        with pytest.raises(AixsmitError, match="GPT without a BIOS boot partition"):
            boot.check("img", grub, dev, f"{dev}p1", False)
        with pytest.raises(AixsmitError, match="not a partition of a disk"):
            boot.check("img", grub, "", dev, False)
        efi = clone.Contents({}, {"./usr/sbin/grub-install", "./usr/lib/grub/x86_64-efi"})
        with pytest.raises(AixsmitError, match="GRUB for EFI .* but no EFI system partition"):
            boot.check("img", efi, dev, f"{dev}p1", False)
        run("sfdisk", "-q", dev, input=disk.sfdisk_script(disk.layout(dev, 64 * MiB, [("/", MiB, MiB)])))
        boot.check("img", grub, dev, f"{dev}p2", False)  # a BIOS boot partition: accepted
        add_partitions(dev)
        run("mkfs.ext4", "-q", f"{dev}p2")
        (tr.base / "m").mkdir()
        run("mount", f"{dev}p2", tr.base / "m")
        try:  # a disk with a mounted partition may be this machine's own boot disk
            with pytest.raises(AixsmitError, match="will not replace the boot loader of a disk in use"):
                boot.check("img", grub, dev, f"{dev}p3", False)
        finally:
            run("umount", tr.base / "m")
    finally:
        subprocess.run(["partx", "-d", dev], capture_output=True)


def test_initramfs_is_made_again_only_when_it_depends_on_the_old_machine():
    from aixsmit.backup import boot

    tools = {"./usr/sbin/update-initramfs"}
    files = {"etc/initramfs-tools/initramfs.conf": "MODULES=most\n"}
    assert boot.initramfs_reason("t", tools, files.get) == ""
    files["etc/crypttab"] = "# none\n"
    assert boot.initramfs_reason("t", tools, files.get) == ""
    for name, text, why in (("etc/initramfs-tools/initramfs.conf", "MODULES=dep\n", "MODULES=dep"),
                            ("etc/initramfs-tools/conf.d/resume", "RESUME=UUID=abc\n", "resumes"),
                            ("etc/crypttab", "root_crypt UUID=abc none luks\n", "crypttab")):
        changed = dict(files, **{name: text})
        assert why in boot.initramfs_reason("t", tools, changed.get)
    assert "host-only" in boot.initramfs_reason("t", {"./usr/bin/dracut"}, files.get)


@needs_root
def test_f4_lists_blank_disks_only(troot):
    from aixsmit.fs.table import System
    from aixsmit.smit.services import free_disks

    tr = troot
    raw = tr.images / "blank.raw"
    with open(raw, "wb") as f:
        f.truncate(48 * MiB)
    dev = run("losetup", "-f", "--show", raw).stdout.strip()
    tr.loops.append(dev)
    items = {i.value: i.text for i in free_disks(System(root="/"))}
    assert dev in items and "48 MB" in items[dev] and "blank" in items[dev] and str(raw) in items[dev]
    used = tr.loop_mount("/home")  # mounted: never offered
    run("sfdisk", "-q", dev, input="label: gpt\ntype=linux\n")  # partitioned: no longer blank
    values = {i.value for i in free_disks(System(root="/"))}
    assert dev not in values and used not in values


def test_old_uuids_are_replaced_where_the_clone_names_them(tmp_path):
    target = tmp_path / "t"
    (target / "etc/default/grub.d").mkdir(parents=True)
    (target / "etc/initramfs-tools/conf.d").mkdir(parents=True)
    (target / "etc/fstab").write_text("UUID=old-root / ext4 errors=remount-ro 0 1\n")
    (target / "etc/crypttab").write_text("data UUID=old-home none luks\n")
    (target / "etc/initramfs-tools/conf.d/resume").write_text("RESUME=UUID=swap-not-cloned\n")
    (target / "etc/default/grub.d/local.cfg").write_text('GRUB_CMDLINE_LINUX="root=UUID=old-root"\n')
    targets = [clone.Target("/", "/dev/x2", "ext4", 0, 0, 0, "", uuid="new-root", old_uuid="old-root"),
               clone.Target("/home", "/dev/x3", "ext4", 0, 0, 0, "", uuid="new-home", old_uuid="old-home")]
    said = []
    clone.rewrite_references(str(target), targets, clone.Steps(lambda l, s: said.append(l), False), "clone", None)
    assert (target / "etc/fstab").read_text().startswith("UUID=new-root / ext4 errors=remount-ro 0 1\n")
    assert (target / "etc/crypttab").read_text() == "data UUID=new-home none luks\n"
    assert (target / "etc/default/grub.d/local.cfg").read_text() == 'GRUB_CMDLINE_LINUX="root=UUID=new-root"\n'
    assert (target / "etc/initramfs-tools/conf.d/resume").read_text() == "RESUME=UUID=swap-not-cloned\n"
    assert sum("Rewriting" in l for l in said) == 2


GRUB = {"./usr/sbin/grub-install", "./usr/sbin/update-grub"}
GRUB_BIOS = {"./usr/lib/grub/i386-pc"}
GRUB_EFI = {"./usr/lib/grub/x86_64-efi", "./usr/lib/grub/x86_64-efi/kernel.img"}
ESP_FSTAB = "UUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n"


def test_firmware_is_read_from_the_image():
    """BIOS when the image has GRUB's i386-pc; EFI when it has GRUB's x86_64-efi modules and an
    ESP on /boot/efi (in image.data or only in its fstab); both when it has both."""
    from aixsmit.backup import boot

    def fw(present, recorded=(), fstab=""):
        return boot.firmware("img", clone.Contents({}, set(present), fstab), {mp: {} for mp in recorded})

    assert fw(GRUB | GRUB_BIOS) == (True, False)
    assert fw(GRUB | GRUB_EFI, ["/", "/boot/efi"]) == (False, True)
    assert fw(GRUB | GRUB_EFI, ["/"], ESP_FSTAB) == (False, True)
    assert fw(GRUB | GRUB_EFI | GRUB_BIOS, ["/"], ESP_FSTAB) == (True, True)
    assert fw(GRUB | GRUB_EFI | GRUB_BIOS, ["/"], "# /boot/efi vfat\n") == (True, False)  # no ESP: BIOS only
    with pytest.raises(AixsmitError, match="no EFI system partition: neither its image.data nor its /etc/fstab"):
        fw(GRUB | GRUB_EFI, ["/"])
    with pytest.raises(AixsmitError, match="without its modules"):
        fw(GRUB | {"./usr/lib/grub/x86_64-efi"}, ["/boot/efi"])
    with pytest.raises(AixsmitError, match="for no platform"):
        fw(GRUB)
    with pytest.raises(AixsmitError, match="records /boot/efi as ext4, not FAT"):
        boot.check("img", clone.Contents({}, GRUB | GRUB_EFI), "", "/dev/x2", True,
                   recorded={"/": {}, "/boot/efi": {"FS_VFS": "ext4"}})


def test_layout_with_an_efi_system_partition():
    fss = [("/boot/efi", 5 * MiB, 100 * MiB), ("/", 500 * MiB, 900 * MiB), ("/home", 20 * MiB, 500 * MiB)]
    efi = disk.layout("/dev/sdb", 4096 * MiB, fss, bios=False, efi=True)
    assert [(p.number, p.mount_point, p.size // MiB, p.type) for p in efi] == [
        (1, "/boot/efi", 100, disk.ESP), (2, "/", 900, disk.LINUX_FS), (3, "/home", 500, disk.LINUX_FS)]
    both = disk.layout("/dev/sdb", 4096 * MiB, fss, bios=True, efi=True)
    assert [(p.device, p.type) for p in both[:3]] == [
        ("/dev/sdb1", disk.BIOS_BOOT), ("/dev/sdb2", disk.ESP), ("/dev/sdb3", disk.LINUX_FS)]
    # Shrunk: the ESP keeps what FAT32 needs, however little the image holds on it.
    small = disk.layout("/dev/sdb", 700 * MiB, fss, bios=False, efi=True)
    assert disk.ESP_MIN <= small[0].size < 100 * MiB
    script = disk.sfdisk_script(both).splitlines()
    assert script[2] == f'type={disk.ESP}, size={both[1].size // 512}, name="EFI system partition"'
    assert disk.parse_layout("/ 1G\n/home rest\n", ["/boot/efi", "/", "/home"], "l",
                             optional={"/boot/efi": disk.ESP_DEFAULT})["/boot/efi"] == disk.ESP_DEFAULT


def make_image(tr, present: set[str], fstab: str):
    """A mksysb of ``tr``'s root holding the files ``present`` names (empty: what clone probes
    for) and ``fstab``."""
    if not (tr.images / "rootfs.img").exists():
        tr.loop_mount("/", size_mb=32)  # / on ext4, as a system's is (troot's own is a tmpfs)
        tr.p("/etc").mkdir()
    for name in present:
        path = tr.p(name[1:])
        if name.endswith((".img", "grub-install", "update-grub")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        else:
            path.mkdir(parents=True, exist_ok=True)
    tr.p("/etc/fstab").write_text("UUID=0aa1 / ext4 errors=remount-ro 0 1\n" + fstab)
    img = tr.base / "sys.mksysb"
    r = aixsmit("cmd", "mksysb", "-i", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stderr
    return img


def blank_disk(tr, mb: int) -> str:
    raw = tr.images / f"blank{mb}.raw"
    with open(raw, "wb") as f:
        f.truncate(mb * MiB)
    dev = run("losetup", "-f", "--show", raw).stdout.strip()
    tr.loops.append(dev)
    return dev


@needs_root
def test_dry_run_of_an_efi_clone_shows_every_step(troot):
    """An image whose system boots by EFI (GRUB's x86_64-efi, /boot/efi in its fstab): the ESP is
    partitioned first (ESP type), made FAT32, staged, filled by grub-install for EFI without
    NVRAM entries and at the fallback path, copied on with mtools and checked; no BIOS GRUB. With
    GRUB for BIOS as well, both."""
    tr = troot
    img = make_image(tr, GRUB | GRUB_EFI, ESP_FSTAB)
    dev = blank_disk(tr, 600)
    r = aixsmit("cmd", "clone", "-f", img, "--disk", dev, "--target", tr.base / "t", "--dry-run", env=tr.env())
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"type={disk.ESP}, size={256 * MiB // 512}, name=\"EFI system partition\"" in out  # the default size
    assert f"{dev}p1" in out and "BIOS boot" not in out and "i386-pc" not in out
    for step in (f"mkfs.vfat -F 32 -n EFI {dev}p1", f"mount -t tmpfs -o mode=0700 -- {dev}p1 {tr.base}/t/boot/efi",
                 "chroot {t} grub-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram\n",
                 "chroot {t} grub-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram --removable\n",
                 "chroot {t} update-grub", f"mcopy -s -m -Q -D o -i {dev}p1 '{tr.base}/t/boot/efi/*' ::/",
                 f"mdir -b -i {dev}p1 ::/EFI/BOOT/BOOTX64.EFI", "The image holds no /boot/efi"):
        assert step.replace("{t}", str(tr.base / "t")) in out, (step, out)
    assert out.index("update-grub") > out.index("--removable")
    assert out.index("mcopy") > out.index("update-grub")
    assert subprocess.run(["blkid", "-p", dev], capture_output=True).returncode == 2  # nothing written

    img = make_image(tr, GRUB | GRUB_EFI | GRUB_BIOS, ESP_FSTAB)
    r = aixsmit("cmd", "clone", "-f", img, "--disk", dev, "--target", tr.base / "t", "--dry-run", env=tr.env())
    assert r.returncode == 0, r.stderr
    assert f"type={disk.BIOS_BOOT}" in r.stdout and f"type={disk.ESP}" in r.stdout
    assert f"grub-install --target=i386-pc {dev}" in r.stdout and "--target=x86_64-efi" in r.stdout
    assert f"mkfs.vfat -F 32 -n EFI {dev}p2" in r.stdout


@needs_root
def test_map_needs_an_esp_typed_partition_for_boot_efi(troot):
    """With --map, the partition for /boot/efi must have the ESP type (the firmware looks for
    boot loaders there only): refused with one line before anything is written."""
    tr = troot
    img = make_image(tr, GRUB | GRUB_EFI, ESP_FSTAB)
    dev = blank_disk(tr, 200)
    run("sfdisk", "-q", dev, input="label: gpt\nsize=80M, type=linux\ntype=linux\n")
    add_partitions(dev)
    try:
        args = ["cmd", "clone", "-f", img, "--map", f"/={dev}p2", "--map", f"/boot/efi={dev}p1", "--target",
                tr.base / "t", "--dry-run"]
        r = aixsmit(*args, env=tr.env())
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"{dev}p1 (for /boot/efi) is not an EFI system partition (type {disk.LINUX_FS})" in r.stderr
        run("sfdisk", "-q", "--part-type", dev, "1", disk.ESP)
        assert disk.partition_type(f"{dev}p1") == disk.ESP and disk.partition_type(dev) == ""
        r = aixsmit(*args, env=tr.env())
        assert r.returncode == 0, r.stderr
        assert "grub-install --target=x86_64-efi" in r.stdout and f"mkfs.vfat -F 32 -n EFI {dev}p1" in r.stdout
        assert "i386-pc" not in r.stdout  # EFI only: no BIOS boot disk is needed
    finally:
        subprocess.run(["partx", "-d", dev], capture_output=True)


def test_fat_gets_the_staged_files_and_never_what_a_link_points_to(tmp_path):
    """What is staged for a FAT file system is copied onto it with mtools; a link in the image
    (FAT holds none, and mcopy would follow it to a file of this host) is left out, and said."""
    fat = tmp_path / "esp.img"
    with open(fat, "wb") as f:
        f.truncate(disk.ESP_MIN)
    run(*disk.fat_mkfs_argv(str(fat)))
    staged = tmp_path / "staged"
    (staged / "EFI/BOOT").mkdir(parents=True)
    (staged / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"MZ" + bytes(1000))
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    (staged / "EFI/leak").symlink_to(secret)
    (staged / "EFI/dirlink").symlink_to(tmp_path)
    said = []
    t = clone.Target("/boot/efi", str(fat), "vfat", 0, 0, 0, "")
    clone.fill_fat(t, str(staged), clone.Steps(lambda line, stream: said.append((stream, line)), False), "clone",
                   check_esp=True)
    listing = run("mdir", "-/", "-b", "-i", fat, "::/", env=disk.MTOOLS_ENV).stdout.split()
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing and not [n for n in listing if "leak" in n or "dirlink" in n]
    assert run("mtype", "-i", fat, "::/EFI/BOOT/BOOTX64.EFI", env=disk.MTOOLS_ENV).stdout.startswith("MZ")
    assert [line for stream, line in said if stream == "stderr"] == [
        "clone: /boot/efi/EFI/dirlink is left out of the FAT file system: FAT holds no links or special files.",
        "clone: /boot/efi/EFI/leak is left out of the FAT file system: FAT holds no links or special files."]
    empty = tmp_path / "empty"
    empty.mkdir()
    run(*disk.fat_mkfs_argv(str(fat)))  # a new, empty FAT: nothing to boot on it
    with pytest.raises(AixsmitError, match="holds no EFI/BOOT/BOOTX64.EFI"):
        clone.fill_fat(clone.Target("/boot/efi", str(fat), "vfat", 0, 0, 0, ""), str(empty),
                       clone.Steps(lambda line, stream: None, False), "clone", check_esp=True)
