"""Root writes only where it means to: another user plants names in a shared backup folder.

The folder is group-writable (the attacker's group) without the sticky bit, as shared backup
folders often are. The attacker (``setpriv --reuid=65534 --regid=65534 --clear-groups``) plants,
before mksysb runs: a symbolic link at the temporary name mksysb used to write to (its pid is
this process's, as mksysb runs in it), a link at the final name to a file of root's, a link at
the final name to a block device, or a file of their own (0666) at the final name. In every
case the image ends up root's, 0600 whatever the umask, verifiable; the files and the device
the links point at are untouched; and the folder holds nothing else new.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from aixsmit.backup.engine import ImageRequest, create_image
from aixsmit.fs.table import System
from aixsmit.fs.volume_groups import find

from conftest import aixsmit, need_tool, needs_root, run

pytestmark = [needs_root, need_tool("setpriv")]

NOBODY = 65534


def _as_attacker(*argv: str) -> None:
    run("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv)


@pytest.fixture
def shared():
    """A folder the attacker can reach and write: /tmp/X (0755) / shared (0770, group 65534)."""
    base = tempfile.mkdtemp(prefix="aixsmit-planted-", dir="/tmp")
    os.chmod(base, 0o755)
    folder = os.path.join(base, "shared")
    os.mkdir(folder)
    os.chown(folder, 0, NOBODY)
    os.chmod(folder, 0o770)
    victims = os.path.join(base, "victims")
    os.mkdir(victims)
    os.chmod(victims, 0o755)
    loops: list[str] = []
    try:
        yield folder, victims, loops
    finally:
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("plant", ["partial-link", "final-link-to-file", "final-link-to-disk", "final-file"])
def test_planted_names_never_redirect_roots_image(troot, shared, plant):
    tr = troot
    folder, victims, loops = shared
    tr.p("/etc/shadow").write_text("root:$6$secret:19000::::::\n")
    final = os.path.join(folder, "sys.mksysb")
    victim = os.path.join(victims, "passwd")
    with open(victim, "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\n")
    disk_file = os.path.join(victims, "disk.img")
    with open(disk_file, "wb") as f:
        f.truncate(4 << 20)
    disk = run("losetup", "-f", "--show", disk_file).stdout.strip()
    loops.append(disk)
    planted = set()
    if plant == "partial-link":
        # The hidden name mksysb wrote to before (.NAME.aixsmit-partial-PID) with O_CREAT|O_TRUNC.
        name = os.path.join(folder, f".sys.mksysb.aixsmit-partial-{os.getpid()}")
        _as_attacker("ln", "-s", victim, name)
        planted.add(os.path.basename(name))
    elif plant == "final-link-to-file":
        _as_attacker("ln", "-s", victim, final)
    elif plant == "final-link-to-disk":
        _as_attacker("ln", "-s", disk, final)
    else:
        _as_attacker("sh", "-c", f"echo theirs > {final}; chmod 666 {final}")
    before = {n: os.lstat(os.path.join(folder, n)) for n in os.listdir(folder)}

    system = System(root=str(tr.path))
    old = os.umask(0)
    try:
        create_image(ImageRequest("mksysb", find(system, "rootvg"), system, final), lambda line, stream: None)
    finally:
        os.umask(old)

    st = os.lstat(final)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert aixsmit("cmd", "verify", "-f", final).returncode == 0
    assert "./etc/shadow" in aixsmit("cmd", "lsmksysb", "-f", final).stdout.splitlines()
    with open(victim) as f:
        assert f.read() == "root:x:0:0::/root:/bin/sh\n"
    with open(disk, "rb") as f:
        assert f.read(1 << 20).count(0) == 1 << 20  # not a byte of the image on the disk
    # Nothing else written: the folder holds the image and what the attacker planted, no more.
    assert set(os.listdir(folder)) == {"sys.mksysb"} | planted
    for n in planted:
        assert os.lstat(os.path.join(folder, n)).st_ino == before[n].st_ino  # theirs, untouched
    # A non-root user cannot read the image.
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat", final],
                       capture_output=True)
    assert r.returncode != 0 and b"secret" not in r.stdout


def test_level_archives_are_roots_and_0600_through_planted_links(troot, shared):
    """backup -0 (the level archives of scheduled backups) into the same shared folder, with a
    link at the final name to a file of root's: replaced, never written through; 0600."""
    tr = troot
    folder, victims, _ = shared
    tr.loop_mount("/home", size_mb=16)
    tr.p("/home/key").write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(tr.p("/home/key"), 0o600)
    victim = os.path.join(victims, "passwd")
    with open(victim, "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\n")
    final = os.path.join(folder, "home.L0.tar")
    _as_attacker("ln", "-s", victim, final)
    r = subprocess.run(["sh", "-c", f"umask 0; exec {' '.join(map(str, __import__('sys').executable.split()))} -m aixsmit "
                        f"cmd backup -0 --root {tr.path} -f {final} /home"], capture_output=True, text=True, env=tr.env())
    assert r.returncode == 0, r.stderr
    st = os.lstat(final)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    with open(victim) as f:
        assert f.read() == "root:x:0:0::/root:/bin/sh\n"
    assert os.listdir(folder) == ["home.L0.tar"]


def test_a_destination_that_is_somebodys_data_is_refused(troot):
    """The backing file of a mounted loop file system, the mounted device itself, a file inside
    what is being backed up: each refused with one line naming the mount, nothing written."""
    import hashlib

    tr = troot
    dev = tr.loop_mount("/home", size_mb=16)
    backing = tr.images / "home.img"
    tr.p("/etc/thesis.txt").write_text("years of work\n")

    def digest(path) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(1 << 20)).hexdigest()

    before = digest(backing), digest(dev)
    for dest, says in ((backing, f"it is the backing file of {dev.replace('/dev/', '/dev/')}, mounted at {tr.path}/home"),
                       (dev, f"it holds the file system mounted at {tr.path}/home"),
                       (tr.p("/etc/thesis.txt"), f"it is a file of {tr.path}, which this image backs up")):
        r = aixsmit("cmd", "mksysb", "-i", "--root", tr.path, dest, env=tr.env())
        assert r.returncode == 3 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (digest(backing), digest(dev)) == before
    assert tr.p("/etc/thesis.txt").read_text() == "years of work\n"


def test_stale_partials_of_another_host_survive(tmp_path):
    """A folder shared by several hosts (NFS): a partial image named for another host is that
    host's to clean (its pid means nothing here), even when the same pid is gone on this host;
    this host's partial whose process is gone is removed; one whose process runs stays, and so
    does a name that says no host."""
    from aixsmit.backup.destination import PARTIAL, clean_stale_partials, partial_marker

    gone = subprocess.Popen(["true"])
    gone.wait()
    ours_dead = f".sys.mksysb{partial_marker()}{gone.pid}-0001"
    ours_live = f".sys.mksysb{partial_marker()}{os.getpid()}-0002"
    other_host = f".sys.mksysb{PARTIAL}{'x' + os.uname().nodename}@{gone.pid}-0003"
    no_host = f".sys.mksysb{PARTIAL}{gone.pid}-0004"
    for name in (ours_dead, ours_live, other_host, no_host):
        (tmp_path / name).write_bytes(b"image")
    clean_stale_partials(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted([ours_live, other_host, no_host])



@pytest.mark.parametrize("writer", ["backup -0", "backup -i", "savevg", "schedule"])
def test_every_writer_of_archives_refuses_somebodys_data(troot, writer):
    """backup by level (what a scheduled run calls), backup by name and savevg go through the
    one destination check: a mounted disk, a disk holding a file system, a user's file inside
    what is backed up are refused with one line, and left as they were."""
    import hashlib

    from aixsmit.backup.incremental import Chain, backup_fs
    from aixsmit.errors import AixsmitError

    tr = troot
    tr.config.write_text("volume_groups:\n  datavg: [/home]\n")
    dev = tr.loop_mount("/home", size_mb=16)
    spare = tr.image("spare", 8)  # an ext4 file system, not mounted
    loose = run("losetup", "-f", "--show", spare).stdout.strip()
    tr.loops.append(loose)
    tr.p("/home/bob").mkdir()
    tr.p("/home/bob/f1").write_text("bob's thesis\n")

    def digest(path) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(4 << 20)).hexdigest()

    before = digest(loose)
    cases = ((dev, f"it holds the file system mounted at {tr.path}/home"),
             (loose, "it holds a ext4 file system"),
             (tr.p("/home/bob/f1"), f"it is a file of {tr.path}/home, which this image backs up"))
    for dest, says in cases:
        if writer == "backup -0":
            r = aixsmit("cmd", "backup", "-0", "-f", dest, "/home", "--root", tr.path, env=tr.env())
        elif writer == "backup -i":
            r = aixsmit("cmd", "backup", "-i", "-f", dest, "-C", "/home", "bob", "--root", tr.path, env=tr.env())
        elif writer == "savevg":
            r = aixsmit("cmd", "savevg", "-i", "-f", dest, "--root", tr.path, "datavg", env=tr.env())
        else:  # a scheduled run writes through backup_fs, with the chain's own snapshot
            with pytest.raises(AixsmitError) as caught:
                backup_fs(str(tr.p("/home")), "/home", 0, str(dest), False, lambda *a: None,
                          chain=Chain(None, tr.base / "snar"))
            r = subprocess.CompletedProcess([], 3, "", str(caught.value) + "\n")
        assert r.returncode != 0 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert digest(loose) == before
    for d in (dev, loose):
        assert run("blkid", "-p", "-o", "value", "-s", "TYPE", d).stdout.strip() == "ext4"
    assert tr.p("/home/bob/f1").read_text() == "bob's thesis\n"


def test_a_shared_schedule_destination_gives_nobody_a_chain_root_restores(troot):
    """Another user plants DEST/KEY (a link to their folder, or their own folder) holding a
    forged chain with a set-uid root shell: no run writes through it, no restore or changes
    reads it; a destination others can write without the sticky bit is refused at add."""
    import io
    import tarfile

    from aixsmit.backup.incremental import fs_key
    from aixsmit.jobs import schedule as sch

    tr = troot
    tr.loop_mount("/home", size_mb=8)
    tr.p("/home/a").write_text("a0")
    base = tempfile.mkdtemp(prefix="aixsmit-shared-dest-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        dest = os.path.join(base, "dest")
        os.mkdir(dest)
        os.chmod(dest, 0o777)
        env = tr.env()
        add = ("cmd", "schedule", "add", "user", "/home", "--daily", "04:00", "--dest", dest, "--root", tr.path)
        r = aixsmit(*add, env=env)
        assert r.returncode == 2 and "writable by others without the sticky bit" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        os.chmod(dest, 0o1777)  # a shared folder done right: others cannot move what root makes
        assert aixsmit(*add, env=env).returncode == 0
        # The attacker's chain: a full holding ./rootshell, uid 0, mode 4755.
        nb = os.path.join(base, "nb")  # the attacker's own folder
        os.mkdir(nb)
        os.chown(nb, NOBODY, NOBODY)
        _as_attacker("mkdir", "-p", f"{nb}/chain/20261101-040000")
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tf:
            shell = tarfile.TarInfo("./rootshell")
            shell.mode, shell.uid, shell.gid, shell.size = 0o4755, 0, 0, 3
            tf.addfile(shell, io.BytesIO(b"sh\n"))
        forged = f"{nb}/chain/20261101-040000/20261101-040000.L0.tar"
        with open(forged, "wb") as f:
            f.write(data.getvalue())
        os.chown(forged, NOBODY, NOBODY)
        key = os.path.join(dest, fs_key("/home"))
        target = tr.base / "restored"
        for plant, says in (("link", "is a symbolic link"), ("folder", "belongs to nobody")):
            if plant == "link":
                _as_attacker("ln", "-s", f"{nb}/chain", key)
            else:
                os.unlink(key)
                _as_attacker("cp", "-r", f"{nb}/chain", key)
            before = sorted(os.listdir(f"{nb}/chain"))
            logs = []
            assert sch.run_schedule("user1", lambda line, stream: logs.append(line)) != 0
            assert any(says in line for line in logs), logs
            assert sorted(os.listdir(f"{nb}/chain")) == before  # root wrote nothing through the link
            for action in ("restore", "changes"):
                extra = ("--target", target) if action == "restore" else ()
                r = aixsmit("cmd", "schedule", action, "user1", "--fs", "/home", *extra, env=env)
                assert r.returncode != 0 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert not (target / "rootshell").exists()
        # A folder of root's that its group can write is not trusted either.
        shutil.rmtree(key)
        os.mkdir(key)
        os.chmod(key, 0o770)
        r = aixsmit("cmd", "schedule", "changes", "user1", "--fs", "/home", env=env)
        assert r.returncode != 0 and "is writable by its group (mode 0770)" in r.stderr, r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
