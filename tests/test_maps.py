"""-m map files for what this machine cannot show for real: a partition of a disk (the test
kernel reads no partition tables) and an LVM volume (no device-mapper here). sysfs is a tree
built like the kernel's; dmsetup is a stand-in printing a captured linear table."""

from __future__ import annotations

import stat

from aixsmit.backup import maps


def _sysfs(tmp_path):
    devices = tmp_path / "devices"
    block = tmp_path / "class" / "block"
    block.mkdir(parents=True)
    for disk, parts in (("sda", {"sda2": (1050624, 2097152), "sda3": (3147776, 4194304)}),):
        d = devices / disk
        d.mkdir(parents=True)
        (d / "size").write_text("62914560\n")
        (d / "dev").write_text("8:0\n")
        (block / disk).symlink_to(d)
        for name, (start, size) in parts.items():
            p = d / name
            p.mkdir()
            (p / "partition").write_text(name[-1] + "\n")
            (p / "start").write_text(f"{start}\n")
            (p / "size").write_text(f"{size}\n")
            (p / "dev").write_text(f"8:{name[-1]}\n")
            (block / name).symlink_to(p)
    dm = devices / "virtual" / "dm-0"
    (dm / "slaves").mkdir(parents=True)
    (dm / "dev").write_text("254:0\n")
    (dm / "size").write_text("3145728\n")
    (dm / "slaves" / "sda2").mkdir()
    (block / "dm-0").symlink_to(dm)
    dev = tmp_path / "dev" / "block"
    dev.mkdir(parents=True)
    (dev / "8:2").symlink_to(devices / "sda" / "sda2")
    (dev / "8:3").symlink_to(devices / "sda" / "sda3")
    return block, dev


def test_partition_is_mapped_on_its_whole_disk(tmp_path, monkeypatch):
    block, dev = _sysfs(tmp_path)
    monkeypatch.setattr(maps, "SYS_BLOCK", str(block))
    text = maps.map_text("/dev/sda2")
    assert text.splitlines() == ["# aixsmit map of /dev/sda2 (512-byte sectors on the whole disk)",
                                 "sda:1050624-3147775"]
    assert maps.map_text("/dev/sda").splitlines()[-1] == "sda:0-62914559"
    assert maps.map_text("tmpfs") is None and maps.map_text("/dev/nosuch") is None


def test_lvm_volume_is_mapped_by_its_segments(tmp_path, monkeypatch):
    block, dev = _sysfs(tmp_path)
    monkeypatch.setattr(maps, "SYS_BLOCK", str(block))
    monkeypatch.setattr(maps, "SYS_DEV", str(dev))
    # Without dmsetup the map says what it could not read, and on which disks the volume is.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    text = maps.map_text("/dev/dm-0")
    assert "device-mapper volume on sda2" in text
    assert all(line.startswith("#") for line in text.splitlines())  # no range it cannot vouch for
    # With it: each linear segment, as sectors of the whole disk (a PV on sda2 starts at 1050624).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "dmsetup"
    stub.write_text("#!/bin/sh\n[ \"$1 $2 $3 $4 $5\" = \"table -j 254 -m 0\" ] || exit 1\n"
                    "printf '0 2097152 linear 8:2 2048\\n2097152 1048576 linear 8:3 0\\n'\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert maps.map_text("/dev/dm-0").splitlines()[1:] == [
        f"sda:{1050624 + 2048}-{1050624 + 2048 + 2097152 - 1}",
        f"sda:3147776-{3147776 + 1048576 - 1}",
    ]
