"""Adding file systems and cloning a system image onto new, smaller loop devices, for real."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import aixsmit, image_tar, needs_root, run
from treecmp import diff, snapshot

pytestmark = needs_root


def new_loop(tr, name: str, mb: int) -> str:
    img = tr.images / f"{name}.raw"
    with open(img, "wb") as f:
        f.truncate(mb << 20)
    dev = run("losetup", "-f", "--show", img).stdout.strip()
    tr.loops.append(dev)
    return dev


def blkid(dev: str, tag: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", tag, dev], capture_output=True, text=True).stdout.strip()


def test_crfs_makes_records_and_mounts(troot):
    tr = troot
    dev = new_loop(tr, "local", 40)
    r = aixsmit("cmd", "crfs", "-v", "ext4", "-d", dev, "-m", "/local", "-A", "yes", "--mount", "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stderr
    uuid = blkid(dev, "UUID")
    assert blkid(dev, "TYPE") == "ext4" and uuid
    assert f"UUID={uuid} /local ext4 defaults 0 2" in tr.p("/etc/fstab").read_text().splitlines()
    assert subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(tr.p("/local"))], capture_output=True, text=True).stdout.strip() == dev
    ls = aixsmit("cmd", "lsfs", "--root", tr.path, env=tr.env()).stdout
    assert f"UUID={uuid}" in ls and "/local" in ls


def test_crfs_refusals(troot):
    tr = troot
    used = tr.loop_mount("/home")
    r = aixsmit("cmd", "crfs", "-v", "ext4", "-d", used, "-m", "/other", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and "is in use: it is mounted on" in r.stderr
    dev = new_loop(tr, "hasfs", 32)
    run("mkfs.ext4", "-q", dev)
    r = aixsmit("cmd", "crfs", "-v", "xfs", "-d", dev, "-m", "/x", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and "already holds a ext4 file system; crfs will not overwrite it." in r.stderr
    assert blkid(dev, "TYPE") == "ext4"  # untouched
    tr.p("/etc/plain").write_text("not a device")
    r = aixsmit("cmd", "crfs", "-v", "ext4", "-d", str(tr.p("/etc/plain")), "-m", "/x", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and "is not a block device" in r.stderr
    assert not tr.p("/x").exists()


def test_crfs_writes_nothing_through_links_in_root(troot):
    """ROOT/etc a link to a host folder holding an fstab, ROOT/srv a link to a host folder:
    crfs --root refuses each in one line before mkfs (the device stays blank) and writes
    nothing outside ROOT; an fstab larger than any real one is refused, not read whole."""
    tr = troot
    host = tr.base / "host"
    (host / "etc").mkdir(parents=True)
    (host / "srv").mkdir()
    (host / "etc" / "fstab").write_text("# the host's\n")
    dev = new_loop(tr, "blank", 32)
    shutil.rmtree(tr.p("/etc"))
    tr.p("/etc").symlink_to(host / "etc")
    r = aixsmit("cmd", "crfs", "-v", "ext4", "-d", dev, "-m", "/local", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no file system was made" in r.stderr, r.stderr
    tr.p("/etc").unlink()
    tr.p("/etc").mkdir()
    tr.p("/srv").symlink_to(host / "srv")
    r = aixsmit("cmd", "crfs", "-v", "ext4", "-d", dev, "-m", "/srv/data", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no file system was made" in r.stderr, r.stderr
    assert blkid(dev, "TYPE") == ""
    assert (host / "etc" / "fstab").read_text() == "# the host's\n" and not (host / "srv" / "data").exists()
    assert not (host / "local").exists() and not tr.p("/etc/fstab").exists()
    with open(tr.p("/etc/fstab"), "wb") as f:
        f.truncate(2 << 20)
    r = aixsmit("cmd", "lsfs", "--root", tr.path, env=tr.env())
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "larger than" in r.stderr, r.stderr


@pytest.fixture
def system_on_loops(troot):
    """/, /usr and /home each on its own ext4 loop device (64 MB), with an fstab."""
    tr = troot
    root_dev = tr.loop_mount("/", size_mb=64)  # over the tmpfs
    for d in ("usr", "home", "etc", "tmp", "var"):
        tr.p(f"/{d}").mkdir(exist_ok=True)
    usr_dev = tr.loop_mount("/usr", size_mb=64)
    home_dev = tr.loop_mount("/home", size_mb=64)
    tr.p("/etc/fstab").write_text(f"{root_dev} / ext4 defaults 0 1\n{usr_dev} /usr ext4 defaults 0 2\n"
                                  f"{home_dev} /home ext4 defaults 0 2\n/dev/sdz1 /data xfs defaults 0 2\n")
    tr.p("/etc/hostname").write_text("original\n")
    tr.p("/etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\toriginal\n")
    (tr.p("/usr/lib")).mkdir()
    for i in range(200):
        tr.p(f"/usr/lib/lib{i}.so").write_bytes(bytes([i % 256]) * (1000 + i))
    tr.p("/home/alice").mkdir()
    tr.p("/home/alice/.profile").write_text("export PS1='$ '\n")
    tr.p("/usr/bin").mkdir()
    tr.p("/usr/bin/tool").write_text("#!/bin/sh\n")
    tr.p("/usr/bin/tool").chmod(0o755)
    tr.p("/usr/bin/tool-link").symlink_to("tool")
    img = tr.base / "sys.mksysb"
    r = aixsmit("cmd", "mksysb", "-i", "--root", tr.path, img, env=tr.env())
    assert r.returncode == 0, r.stderr
    tr.img = img
    return tr


def test_clone_onto_smaller_devices(system_on_loops):
    tr = system_on_loops
    devs = {mp: new_loop(tr, f"new{i}", 32) for i, mp in enumerate(("/", "/usr", "/home"))}
    target = tr.base / "clone"
    maps = [f"--map={mp}={d}" for mp, d in devs.items()]
    dry = aixsmit("cmd", "clone", "-f", tr.img, *maps, "--target", target, "--dry-run", "--no-boot", env=tr.env())
    assert dry.returncode == 0, dry.stderr
    assert "MOUNT POINT" in dry.stdout and "shrunk" in dry.stdout and "dry run: no device was touched" in dry.stdout
    assert all(blkid(d, "TYPE") == "" for d in devs.values())
    # The image holds no boot loader: refused before anything is written, unless --no-boot.
    r = aixsmit("cmd", "clone", "-f", tr.img, *maps, "--target", target, env=tr.env())
    assert r.returncode == 1 and "holds no GRUB" in r.stderr and "--no-boot" in r.stderr
    assert all(blkid(d, "TYPE") == "" for d in devs.values())
    r = aixsmit("cmd", "clone", "-f", tr.img, *maps, "--target", target, "--hostname", "copy", "--no-boot",
                env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    # Mount the result, as the new machine would, and compare.
    run("mount", devs["/"], target)
    try:
        run("mount", devs["/usr"], target / "usr")
        run("mount", devs["/home"], target / "home")
        for sub in ("usr", "home"):
            assert diff(snapshot(str(tr.p("/" + sub)), skip=("lost+found",)), snapshot(str(target / sub), skip=("lost+found",))) == []
        fstab = (target / "etc" / "fstab").read_text().splitlines()
        for mp, d in devs.items():
            assert any(l.split()[:3] == [f"UUID={blkid(d, 'UUID')}", mp, "ext4"] for l in fstab), fstab
        # What the image did not hold stays, with nofail: the new machine may not have it.
        assert "/dev/sdz1 /data xfs nofail 0 2" in fstab
        assert (target / "etc" / "hostname").read_text() == "copy\n"
        assert "127.0.1.1\tcopy" in (target / "etc" / "hosts").read_text()
    finally:
        subprocess.run(["umount", "-R", str(target)])


def test_clone_mapping_and_size_errors(system_on_loops):
    tr = system_on_loops
    tiny = new_loop(tr, "tiny", 4)
    ok = new_loop(tr, "ok", 32)
    target = tr.base / "c"
    r = aixsmit("cmd", "clone", "-f", tr.img, f"--map=/={ok}", "--target", target, "--no-boot", env=tr.env())
    assert r.returncode == 1 and "no device is mapped for /usr, /home" in r.stderr
    r = aixsmit("cmd", "clone", "-f", tr.img, f"--map=/={ok}", f"--map=/usr={tiny}", f"--map=/home={ok}",
                "--target", target, env=tr.env())
    assert r.returncode == 2 and "one device is mapped to two file systems" in r.stderr
    other = new_loop(tr, "other", 32)
    r = aixsmit("cmd", "clone", "-f", tr.img, f"--map=/={ok}", f"--map=/usr={tiny}", f"--map=/home={other}",
                "--target", target, env=tr.env())
    assert r.returncode == 1 and r.stderr.startswith("0512-029 clone: There is not enough room on")
    r = aixsmit("cmd", "clone", "-f", tr.img, f"--map=/={ok}", f"--map=/usr={other}", f"--map=/home={tiny}",
                "--map=/opt=/dev/null", "--target", target, env=tr.env())
    assert r.returncode == 1 and "the image has no file system /opt" in r.stderr


def test_restvg_remakes_a_group_on_a_new_device(troot):
    tr = troot
    tr.config.write_text("volume_groups:\n  datavg: [/data]\n")
    tr.loop_mount("/data")
    tr.p("/data/db").write_text("rows")
    img = tr.base / "datavg.savevg"
    assert aixsmit("cmd", "savevg", "-i", "-f", img, "--root", tr.path, "datavg", env=tr.env()).returncode == 0
    run("umount", tr.p("/data"))
    new = new_loop(tr, "newdata", 32)
    r = aixsmit("cmd", "restvg", "-f", img, f"--map=/data={new}", "--root", tr.path, env=tr.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert tr.p("/data/db").read_text() == "rows"
    assert f"UUID={blkid(new, 'UUID')} /data ext4" in tr.p("/etc/fstab").read_text()


def test_clone_writes_nothing_through_a_link_out_of_the_target(system_on_loops):
    """An image whose ./etc is a symbolic link to a folder of the host: clone edits fstab, hostname
    and hosts of the target, resolved inside it, and never the host's (issue: clone followed it)."""
    import tarfile

    tr = system_on_loops
    host_etc = tr.base / "host-etc"
    host_etc.mkdir()
    for name in ("fstab", "hostname", "hosts"):
        (host_etc / name).write_text(f"the host's {name}\n")
    before = {p.name: p.read_text() for p in host_etc.iterdir()}
    hostile = tr.base / "hostile.mksysb"
    with image_tar(tr.img) as src, tarfile.open(hostile, "w", format=tarfile.PAX_FORMAT) as out:
        for m in src:
            if m.name in ("./etc", "etc"):
                link = tarfile.TarInfo(m.name)
                link.type, link.linkname = tarfile.SYMTYPE, str(host_etc)
                out.addfile(link)
            elif not m.name.lstrip("./").startswith("etc/"):
                out.addfile(m, src.extractfile(m) if m.isfile() else None)
    devs = {mp: new_loop(tr, f"h{i}", 32) for i, mp in enumerate(("/", "/usr", "/home"))}
    target = tr.base / "hostile-clone"
    r = aixsmit("cmd", "clone", "-f", hostile, *[f"--map={mp}={d}" for mp, d in devs.items()], "--target", target,
                "--hostname", "evil", "--no-boot", env=tr.env())
    assert {p.name: p.read_text() for p in host_etc.iterdir()} == before
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 1, r.stderr
    if r.returncode != 0:
        assert "clone resolves every path inside the target" in r.stderr
    assert not [l for l in open("/proc/self/mountinfo", errors="replace").read().splitlines() if str(target) in l]


def test_a_stopped_clone_unmounts_what_it_mounted(system_on_loops):
    """SIGTERM (cancel in COMMAND STATUS, a closed terminal) while the image is restored: the
    clone's file systems are unmounted again and the error is one line."""
    import os
    import signal
    import sys
    import time

    tr = system_on_loops
    slow = tr.base / "slowbin"
    slow.mkdir()
    (slow / "tar").write_text("#!/bin/sh\nsleep 60\n")  # the restore: long enough to be stopped in
    (slow / "tar").chmod(0o755)
    devs = {mp: new_loop(tr, f"s{i}", 32) for i, mp in enumerate(("/", "/usr", "/home"))}
    target = tr.base / "stopped"
    env = tr.env(PATH=f"{slow}:{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "aixsmit", "cmd", "clone", "-f", str(tr.img), "--target", str(target),
                             "--no-boot", *[f"--map={mp}={d}" for mp, d in devs.items()]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mounted = lambda: [l for l in open("/proc/self/mountinfo", errors="replace").read().splitlines() if str(target) in l]  # noqa: E731
    end = time.monotonic() + 60
    while len(mounted()) < 3 and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.1)
    assert len(mounted()) == 3

    def restoring() -> bool:  # the fake tar runs, started by this clone (a descendant of proc)
        for pid in subprocess.run(["pgrep", "-x", "tar"], capture_output=True, text=True).stdout.split():
            while pid not in ("0", "1"):
                try:
                    pid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    break
                if pid == str(proc.pid):
                    return True
        return False

    end = time.monotonic() + 60
    while not restoring() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
    assert restoring(), "the clone's restore (tar) never started"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.strip().splitlines() == [
        "clone: stopped by signal 15; what was mounted for the clone is unmounted, and the target disk is incomplete."]
    assert mounted() == []
