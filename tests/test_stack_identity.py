"""A stack (two file systems on one mount point) comes back by the one identity of a file
system (UUID, and a loop device's backing file and offset), never by a device name: a lower
file system whose device is called something else by now is recognised; another file system in
its place is not stacked over. findmnt is the oracle."""

from __future__ import annotations

import shutil

from aixsmit.fs.ledger import Ledger

from conftest import aixsmit, findmnt_table, needs_root, run


def _stack_at(tr, mp: str) -> list[dict]:
    return [m for m in findmnt_table(tr.path) if m["target"] == str(tr.p(mp))]


def _free_loop_other_than(tr, dev: str) -> str:
    """A free loop device name that is not ``dev`` (a hog takes ``dev`` if it is the first free)."""
    free = run("losetup", "-f").stdout.strip()
    if free == dev:
        tr.loops.append(run("losetup", "-f", "--show", tr.image("hog", 8)).stdout.strip())
        free = run("losetup", "-f").stdout.strip()
    return free


def _attach_disk(tr, img, name: str = "") -> tuple[str, str]:
    """``img`` as a partitioned loop "disk": (disk, its first partition)."""
    dev = run("losetup", "-P", "--show", name or "-f", img).stdout.strip()
    tr.loops.append(dev)
    run("partx", "-a", dev, check=False)  # where losetup -P does not make the nodes
    return dev, dev + "p1"


def _detach_disk(tr, dev: str) -> None:
    run("partx", "-d", dev, check=False)
    run("losetup", "-d", dev)
    tr.loops.remove(dev)


@needs_root
def test_stack_over_a_disk_whose_device_was_renamed_comes_back(troot):
    """The lower file system is a partition; between the umount and mount --ledger its disk is
    detached and attached again on another number (as a disk is renamed sdb -> sdc on the next
    boot): same UUID, another device name. The stack comes back in order, with its data."""
    tr = troot
    img = tr.images / "disk.img"
    with open(img, "wb") as f:
        f.truncate(24 << 20)
    run("sfdisk", "-q", img, input="start=2048, type=83\n")
    disk, part = _attach_disk(tr, img)
    try:
        run("mkfs.ext4", "-q", "-F", part)
        tr.p("/data").mkdir()
        run("mount", part, tr.p("/data"))
        tr.p("/data/lower-only").write_text("lower")
        upper = run("losetup", "-f", "--show", tr.image("data_upper", 8)).stdout.strip()
        tr.loops.append(upper)
        run("mount", upper, tr.p("/data"))
        tr.p("/data/upper-only").write_text("upper")
        r = aixsmit("cmd", "umount", "/data", "--root", tr.path, env=tr.env())
        assert r.returncode == 0, r.stderr
        assert _stack_at(tr, "/data") == []
        upper_rec = next(x for x in Ledger(tr.base / "state").entries() if x.below)
        assert upper_rec.below[0][1].uuid  # the stack is recorded by UUID, not by device name

        _detach_disk(tr, disk)
        disk2, part2 = _attach_disk(tr, img, _free_loop_other_than(tr, disk))
        assert part2 != part

        r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=tr.env())
        assert r.returncode == 0, r.stdout + r.stderr
        after = run("findmnt", "-rn", "-o", "SOURCE", "--mountpoint", tr.p("/data")).stdout.split()
        assert after == [part2, upper]  # bottom first, as mountinfo lists a stack
        assert tr.p("/data/upper-only").read_text() == "upper"
        assert Ledger(tr.base / "state").entries() == []
        run("umount", tr.p("/data"))
        assert tr.p("/data/lower-only").read_text() == "lower"
    finally:
        tr.cleanup()  # the partition unmounted before its disk's nodes are dropped
        run("partx", "-d", disk, check=False)


@needs_root
def test_stack_is_not_put_over_another_file_system_in_the_lower_ones_place(troot):
    """The lower file system's image is replaced by another file system (same file, same
    offset, another UUID) and mounted there by hand: the upper file system is not stacked over
    it, and both records stay."""
    tr = troot
    lower = tr.loop_mount("/data", 8)
    lower_file = run("losetup", "-n", "-O", "BACK-FILE", lower).stdout.strip()
    upper = run("losetup", "-f", "--show", tr.image("data_upper", 8)).stdout.strip()
    tr.loops.append(upper)
    run("mount", upper, tr.p("/data"))
    tr.p("/data/upper-only").write_text("upper")
    assert aixsmit("cmd", "umount", "/data", "--root", tr.path, env=tr.env()).returncode == 0
    assert len(Ledger(tr.base / "state").entries()) == 2

    run("losetup", "-d", lower)
    tr.loops.remove(lower)
    shutil.copyfile(tr.image("other", 8), lower_file)
    other = run("losetup", "-f", "--show", lower_file).stdout.strip()
    tr.loops.append(other)
    run("mount", other, tr.p("/data"))

    r = aixsmit("cmd", "mount", "--ledger", "--root", tr.path, env=tr.env())
    assert r.returncode != 0
    assert "0506-333 /data is already mounted" in r.stderr, r.stderr
    assert [m["source"] for m in _stack_at(tr, "/data")] == [f"loop:{lower_file}"]  # nothing over it
    assert not tr.p("/data/upper-only").exists()
    assert len(Ledger(tr.base / "state").entries()) == 2


def test_records_written_before_the_one_identity_are_read_as_one():
    """A stack stored as LinuxHost.identity() strings (file@offset for a loop device, else the
    device) is read as the same Identity a record holds; a new record stores the fields."""
    from aixsmit.fs.ledger import Identity, Record

    old = {"mount_point": "/data", "path": "/data", "root": "/", "source": "/dev/loop3", "vfs": "ext4",
           "uuid": "u1", "backing_file": "/img/upper.img",
           "below": [["ext4", "/img/lower@x.img@1048576", "/"], ["tmpfs", "tmpfs", "/"], ["xfs", "/dev/sdb1", "/"]]}
    rec = Record.from_json(old)
    assert [b[1] for b in rec.below] == [Identity(backing_file="/img/lower@x.img", offset=1048576),
                                         Identity(source="tmpfs"), Identity(source="/dev/sdb1")]
    assert rec.identity == Identity(uuid="u1", backing_file="/img/upper.img")
    again = Record.from_json(rec.to_json())
    stored = again.to_json()["below"][0]
    assert again == rec and stored == ["ext4", {"backing_file": "/img/lower@x.img", "offset": 1048576}, "/"]
    assert Identity.of({"uuid": "u2"}, "/dev/sdc1") == Identity(uuid="u2")  # never the device name
    assert Identity.of({}, "server:/export") == Identity(source="server:/export")
