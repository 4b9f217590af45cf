"""restore -x and what is already in its target: links planted there, files where the image
has a directory, the target's own mode; and what restore says about a damaged or changed image
(the same one line as list and verify), read once, by any name."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

from test_hostile_archives import Image, _base, _member

from conftest import aixsmit, needs_root

pytestmark = needs_root


def _image(tmp_path, data: bytes, name: str = "s.img"):
    img = tmp_path / name
    img.write_bytes(data)
    return img


def _restore(img, target, *files):
    return aixsmit("cmd", "restore", "-x", "-f", img, "--target", target, *files)


def test_a_link_planted_in_the_target_is_not_written_through(tmp_path):
    # The second stream of a mksysb holds ./etc/hostname without ./etc before it.
    img = _image(tmp_path, Image("mksysb").file("./etc/hostname", b"web1\n").finish())
    victim = tmp_path / "victim"
    victim.mkdir()
    target = tmp_path / "tgt"
    target.mkdir(mode=0o777)
    os.symlink(victim, target / "etc")
    r = _restore(img, target)
    assert r.returncode == 1 and f"{target}/etc is a symbolic link to {victim}" in r.stderr.splitlines()[-1]
    assert os.listdir(victim) == [] and sorted(os.listdir(target)) == ["etc"]


def test_a_link_deep_in_the_target_is_refused_for_one_file(tmp_path):
    img = _image(tmp_path, _base("mksysb").dir("./home").dir("./home/alice").dir("./home/alice/docs")
                 .file("./home/alice/docs/notes", b"secret\n").finish())
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "tgt"
    (target / "home/alice").mkdir(parents=True)
    os.symlink(out, target / "home/alice/docs")
    r = _restore(img, target, "./home/alice/docs/notes")
    assert r.returncode == 1 and "home/alice/docs is a symbolic link" in r.stderr.splitlines()[-1]
    assert os.listdir(out) == []


def test_a_link_inside_the_target_is_written_through(tmp_path):
    img = _image(tmp_path, Image("mksysb").file("./etc/hostname", b"web1\n").finish())
    target = tmp_path / "tgt"
    (target / "real-etc").mkdir(parents=True)
    os.symlink("real-etc", target / "etc")
    assert _restore(img, target).returncode == 0
    assert (target / "real-etc/hostname").read_text() == "web1\n"


def test_a_file_where_the_image_has_a_directory_is_kept(tmp_path):
    img = _image(tmp_path, _base("mksysb").dir("./bin").file("./bin/ls", b"elf\n").finish())
    target = tmp_path / "tgt"
    target.mkdir()
    (target / "bin").write_text("precious\n")
    r = _restore(img, target)
    assert r.returncode == 1 and f"{target}/bin is a file where" in r.stderr.splitlines()[-1]
    assert (target / "bin").read_text() == "precious\n" and not (target / "before").exists()


def test_the_target_keeps_its_own_mode(tmp_path):
    img = Image("mksysb")
    ti = tarfile.TarInfo(".")
    ti.type, ti.mode = tarfile.DIRTYPE, 0o1777
    img._add(ti, None, True, b"d")
    img = _image(tmp_path, img.file("./etc/hostname").finish())
    target = tmp_path / "tgt"
    target.mkdir(mode=0o700)
    os.chmod(target, 0o700)
    assert _restore(img, target).returncode == 0
    assert oct(os.stat(target).st_mode & 0o7777) == oct(0o700) and (target / "etc/hostname").exists()


def test_a_changed_byte_fails_the_restore_and_names_the_member(tmp_path):
    good = _base().file("./data/one", b"1" * 3000).file("./data/two", b"2" * 3000).finish()
    bad = bytearray(good)
    bad[_member(good, "./data/one").offset_data + 10] ^= 1
    target = tmp_path / "tgt"
    target.mkdir()
    r = _restore(_image(tmp_path, bytes(bad)), target)
    assert r.returncode == 1 and "./data/one" in r.stderr.splitlines()[-1] and "checksum" in r.stderr.splitlines()[-1]


def test_a_truncated_image_says_one_line_not_tars(tmp_path):
    good = _base().file("./data/one", b"1" * 3000).file("./data/two", b"2" * 5000).finish()
    target = tmp_path / "tgt"
    target.mkdir()
    r = _restore(_image(tmp_path, good[:_member(good, "./data/two").offset_data + 1024]), target)
    assert r.returncode == 1 and not any(line.startswith("tar:") for line in r.stderr.splitlines()), r.stderr
    assert "is damaged: ./data/two: only 1024 of its 5000 bytes" in r.stderr.splitlines()[-1]


def test_an_image_named_with_a_colon_is_a_local_file(tmp_path):
    # GNU tar takes "node1:2026.img" for a file on the host node1 unless told --force-local.
    _image(tmp_path, _base().finish(), "node1:2026.img")
    (tmp_path / "tgt").mkdir()
    r = subprocess.run([sys.executable, "-m", "aixsmit", "cmd", "restore", "-x", "-f", "node1:2026.img", "--target",
                        "tgt"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tgt/data/before").read_text() == "before\n"



def test_restvg_keeps_a_file_where_the_image_has_a_directory(troot, tmp_path):
    troot.loop_mount("/data", size_mb=16)
    troot.config.write_text("volume_groups:\n  datavg: [/data]\n")
    (troot.p("/data") / "sub").write_text("precious\n")
    img = _image(tmp_path, _base().dir("./data/sub").file("./data/sub/f").finish())
    r = aixsmit("cmd", "restvg", "--root", troot.path, "-f", img, env=troot.env())
    assert r.returncode == 1 and "/data/sub is a file where" in r.stderr.splitlines()[-1], r.stderr
    assert (troot.p("/data") / "sub").read_text() == "precious\n" and not (troot.p("/data") / "before").exists()


def test_a_small_archive_restores_what_it_lists(tmp_path):
    # A by-name backup of one small file is a single 10 KB record: the survey reads all of it
    # into its buffer, and tar must still read the archive from its first byte.
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/a.txt").write_bytes(b"hello\n")
    img = tmp_path / "one.bk"
    assert aixsmit("cmd", "backup", "-i", "-f", img, "-C", tmp_path / "dir", "a.txt").returncode == 0
    listed = aixsmit("cmd", "restore", "-T", "-f", img)
    assert "./a.txt" in listed.stdout
    target = tmp_path / "empty"
    target.mkdir()
    r = _restore(img, target)
    assert r.returncode == 0, r.stderr
    assert (target / "a.txt").read_bytes() == b"hello\n"


def test_restvg_dry_run_writes_nothing(troot, tmp_path):
    troot.loop_mount("/data", size_mb=16)
    troot.config.write_text("volume_groups:\n  datavg: [/data]\n")
    (troot.p("/data") / "report").write_text("live edit\n")
    img = _image(tmp_path, _base().file("./data/report", b"orig\n").finish())
    r = aixsmit("cmd", "restvg", "--root", troot.path, "-f", img, "--dry-run", env=troot.env())
    assert r.returncode == 0 and "dry run: nothing was restored" in r.stdout, r.stderr
    assert (troot.p("/data") / "report").read_text() == "live edit\n"
    # The same command without --dry-run does restore: the test above is not vacuous.
    r = aixsmit("cmd", "restvg", "--root", troot.path, "-f", img, env=troot.env())
    assert r.returncode == 0, r.stderr
    assert (troot.p("/data") / "report").read_text() == "orig\n"


def test_a_packed_image_is_refused_as_an_unpacked_one_with_nothing_written(tmp_path):
    """The survey of a packed image reads zstd's output as it comes (the image is unpacked once
    for it, once more by tar): a member through a link the image holds, late in the image, is
    refused before tar starts, with the line the unpacked image gets."""
    outside = tmp_path / "outside"
    outside.mkdir()
    data = (_base().file("./data/first", b"1" * 5000).symlink("./data/link", str(outside))
            .file("./data/link/escape", b"x").finish())
    plain = _image(tmp_path, data, "plain.img")
    packed = _image(tmp_path, subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                                             check=True).stdout, "packed.img")
    said = []
    for img in (plain, packed):
        target = tmp_path / f"t-{img.stem}"
        target.mkdir()
        r = _restore(img, target)
        assert r.returncode == 1 and "nothing was restored" in r.stderr.splitlines()[-1], r.stderr
        assert os.listdir(target) == [] and os.listdir(outside) == []
        said.append(r.stderr.splitlines()[-1].replace(str(img), "IMG").replace(str(target), "T"))
    assert said[0] == said[1]


def test_a_member_after_a_link_of_the_same_name_is_refused(tmp_path):
    # GNU tar makes a link that leads out of the target last: it would stay, and the file's
    # data would be lost, while restore said the image was restored.
    img = _image(tmp_path, Image("mksysb").symlink("./s", "/etc/hostname").file("./s", b"the data\n").finish())
    target = tmp_path / "tgt"
    target.mkdir()
    r = _restore(img, target)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "come after a symbolic link of the same name" in r.stderr.splitlines()[-1] and "./s" in r.stderr
    assert os.listdir(target) == []
    v = aixsmit("cmd", "verify", "-f", img)
    assert v.returncode != 0 and "come after a symbolic link of the same name" in v.stdout + v.stderr
