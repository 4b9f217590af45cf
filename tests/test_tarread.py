"""The image reader's own tar header parser (backup/tarread.py) against the two oracles it must
agree with: GNU tar (what `tar --list` and `tar --extract` see) and Python's tarfile (the reader
it replaced, still used for what tarread does not parse itself: sparse files, global pax
headers). Archives are made by GNU tar in each of its formats, with long names, long links,
prefixes, xattrs and sparse files, and by tarfile where GNU tar cannot write the case."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from aixsmit.backup import archive, image_data, sums, tarread

from conftest import aixsmit

LONG = "d" * 60 + "/" + "e" * 70 + "/" + "f" * 120  # past ustar's 100 (and 155 prefix) bytes


def _tree(root) -> None:
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/file").write_bytes(b"x" * 3000)
    (root / "dir/sub/empty").write_bytes(b"")
    os.makedirs(root / os.path.dirname(LONG))
    (root / LONG).write_bytes(b"long\n")
    os.symlink("dir/file", root / "link")
    os.symlink("../" + LONG, root / "dir/longlink-target")
    os.link(root / "dir/file", root / "hard")
    os.link(root / LONG, root / "hard-to-long")
    (root / "name with spaces ünï").write_text("u\n")
    os.setxattr(root / "dir/file", "user.note", b"a value\nwith a newline")
    with open(root / "sparse", "wb") as f:
        f.seek(5 << 20)
        f.write(b"end")


def _by_tarfile(path) -> list[tuple]:
    out = []
    with tarfile.open(path, "r:") as tf:
        while (m := tf.next()) is not None:
            out.append((m.name, m.linkname, m.type, m.size, m.offset, m.offset_data, tf.offset))
    return out


def _by_tarread(path, stream: bool = False, hashing: bool = False) -> tuple[list[tuple], tarread.Reader]:
    f = open(path, "rb", buffering=0)
    if stream:
        f = io.BufferedReader(_Unseekable(f))
    with f:
        r = tarread.Reader(f, seekable=not stream, hashing=hashing)
        out = []
        while (m := r.next()) is not None:
            out.append((m.name, m.linkname, m.type, m.size, m.offset, m.offset_data, r.offset))
    return out, r


class _Unseekable(io.RawIOBase):
    def __init__(self, f):
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self.f.readinto(b)

    def close(self) -> None:
        self.f.close()
        super().close()


@pytest.mark.parametrize("fmt", ["posix", "gnu", "ustar", "v7", "oldgnu"])
def test_every_gnu_tar_format_reads_as_tarfile_and_tar_read_it(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    img = tmp_path / f"{fmt}.tar"
    flags = ["--sparse", "--xattrs", "--xattrs-include=*"] if fmt == "posix" else [] if fmt in ("ustar", "v7") else ["--sparse"]
    r = subprocess.run(["tar", "--create", f"--format={fmt}", *flags, "-f", img, "-C", src, "."],
                       capture_output=True, text=True)
    # ustar and v7 cannot hold the long name (ustar holds the shorter ones in its prefix field):
    # tar says so and leaves it out; the rest is read.
    assert r.returncode in (0, 2), r.stderr
    ours, _ = _by_tarread(img)
    assert ours == _by_tarfile(img)
    listed = subprocess.run(["tar", "--list", "-f", img], capture_output=True, text=True, check=True).stdout
    assert [n.rstrip("/") for n in listed.splitlines()] == [o[0] for o in ours]
    assert any(o[0] == "./sparse" and o[3] == (5 << 20) + 3 for o in ours)  # its name and size, not GNU's
    streamed, _ = _by_tarread(img, stream=True)
    assert streamed == ours


def test_the_fallback_parses_what_tarread_hands_it(tmp_path):
    """A sparse file (GNU.sparse pax records, or GNU's S type) and a global pax header go to
    tarfile's parser from the same bytes; everything around them is tarread's own."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}) as tf:
        for name in ("./a", "./b/" + "c" * 120):
            ti = tarfile.TarInfo(name)
            ti.size = 700
            tf.addfile(ti, io.BytesIO(b"z" * 700))
    img = tmp_path / "global.tar"
    img.write_bytes(buf.getvalue())
    ours, _ = _by_tarread(img)
    assert ours == _by_tarfile(img) and [o[0] for o in ours] == ["./a", "./b/" + "c" * 120]
    calls = []
    real = tarread.Reader._fallback

    def counted(self, start):
        calls.append(start)
        return real(self, start)

    tarread.Reader._fallback = counted
    try:
        src = tmp_path / "src"
        src.mkdir()
        _tree(src)
        for fmt in ("posix", "gnu"):
            calls.clear()
            path = tmp_path / f"sparse-{fmt}.tar"
            subprocess.run(["tar", "--create", f"--format={fmt}", "--sparse", "-f", path, "-C", src, "."], check=True)
            got, _ = _by_tarread(path)
            assert got == _by_tarfile(path)
            assert len(calls) == 1, (fmt, calls)  # the sparse file only
    finally:
        tarread.Reader._fallback = real


def test_a_link_that_claims_data_is_read_as_tar_extracts_it(tmp_path):
    """A symbolic link or a directory whose header gives a size: tar --extract reads the next
    block as a header (it does not skip), and so does the reader; a regular file's data is
    skipped. The oracle is GNU tar's extraction."""
    def header(name, typ, size, link=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = typ, link
        b = bytearray(ti.tobuf(tarfile.USTAR_FORMAT))
        b[124:136] = b"%011o\0" % size
        b[148:156] = b" " * 8
        b[148:156] = b"%06o\0 " % sum(b)
        return bytes(b)

    def file(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        return ti.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)

    for typ in (tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE):
        img = tmp_path / "claims.tar"
        img.write_bytes(header("a", typ, 1024, "x") + file("hidden", b"h" * 10) + file("after", b"z")
                        + b"\0" * 1024)
        out = tmp_path / f"x{typ.decode()}"
        out.mkdir()
        shown = subprocess.run(["tar", "--extract", "--verbose", "-f", img, "-C", out], capture_output=True,
                               text=True).stdout.split()
        ours, _ = _by_tarread(img)
        assert [o[0] for o in ours] == [n.rstrip("/") for n in shown] == ["a", "hidden", "after"]


def test_hashing_gives_the_images_own_block_checksums(tmp_path):
    data = os.urandom(3 * tarread.CHUNK + 12345)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./big")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    img = tmp_path / "big.tar"
    img.write_bytes(buf.getvalue())
    _, r = _by_tarread(img, hashing=True)
    r.drain()
    with open(img, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        assert r.digests == sums.block_crcs(f.fileno(), 0, size)


def test_header_errors_are_tarfiles(tmp_path):
    bad = bytearray(tarfile.TarInfo("./a").tobuf(tarfile.PAX_FORMAT))
    bad[3] ^= 1  # the name: the checksum no longer matches
    for raw, kind, text in ((b"", "empty", "empty header"), (b"x" * 100, "truncated", "truncated header"),
                            (b"#!/bin/sh\n" * 60, "invalid", "invalid header"),  # (no number in the checksum)
                            (bytes(bad), "invalid", "bad checksum")):
        with pytest.raises(tarfile.HeaderError) as was:
            tarfile.TarInfo.frombuf(raw[:512], "utf-8", "surrogateescape")
        assert str(was.value) == text
        r = tarread.Reader(io.BytesIO(raw))
        with pytest.raises(tarread.HeaderError) as exc:
            r.next()
        assert (exc.value.kind, str(exc.value)) == (kind, text)
    assert tarread.Reader(io.BytesIO(bytes(1024))).next() is None  # the end-of-archive blocks


def test_a_packed_image_cut_short_says_the_same_line_as_an_unpacked_one(tmp_path):
    """A packed image is read as a stream (zstd unpacks it): what it lacks is found when the
    reading reaches it, and said as for a file. Here the tar inside is cut in a member's data
    and packed whole (zstd itself finds nothing wrong)."""
    info = image_data.dump([("vg_data", {"VGNAME": "datavg"})]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("./tmp/vgdata/datavg/datavg.data", info), ("./data/one", b"1" * 3000),
                           ("./data/two", b"2" * 5000)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    whole = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
        cut = whole[:tf.getmember("./data/two").offset_data + 1024]
    plain, packed = tmp_path / "cut.img", tmp_path / "cut.packed.img"
    plain.write_bytes(cut)
    packed.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=cut, capture_output=True, check=True).stdout)
    said = []
    for img in (plain, packed):
        r = aixsmit("cmd", "restore", "-T", "-f", img)
        assert r.returncode == 1
        said.append(r.stderr.strip().splitlines()[-1].split(" is damaged: ", 1)[1])
    assert said[0] == said[1] == ("./data/two: only 1024 of its 5000 bytes are in the image, which ends there: this "
                                  "file is incomplete and everything after it is lost")
    assert archive.is_packed(str(packed))


def test_a_member_handed_to_the_fallback_across_a_read_boundary(tmp_path):
    """A pax header tarread leaves to tarfile (hdrcharset=BINARY: a name that is not UTF-8)
    lying across the boundary between two reads: the fallback parses it from its first byte."""
    for shift in range(0, 2048, 512):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape") as tf:
            ti = tarfile.TarInfo("./pad")
            ti.size = tarread.CHUNK - 3 * 512 - 512 + shift  # its data ends near the first read's end
            tf.addfile(ti, io.BytesIO(b"p" * ti.size))
            ti = tarfile.TarInfo("./n\udcff\udcfe" + "x" * 150)
            ti.size = 10
            tf.addfile(ti, io.BytesIO(b"q" * 10))
        img = tmp_path / "binary.tar"
        img.write_bytes(buf.getvalue())
        for stream in (False, True):
            ours, _ = _by_tarread(img, stream=stream)
            assert ours == _by_tarfile(img), shift


def test_a_sparse_map_the_image_does_not_hold_is_one_line(tmp_path):
    """A pax header announcing a GNU sparse map (format 1.0) of 10^12 entries, then the end of
    the image: tarfile's own parse of it fails; every reader says one line, no traceback."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./tmp/vgdata/datavg/datavg.data")
        info = image_data.dump([("vg_data", {"VGNAME": "datavg"})]).encode()
        ti.size = len(info)
        tf.addfile(ti, io.BytesIO(info))
        ti = tarfile.TarInfo("./GNUSparseFile.0/data")
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "./data/s",
                          "GNU.sparse.realsize": "10"}
        ti.size = 512
        tf.addfile(ti, io.BytesIO(b"1000000000000\n" + b"1\n" * 249))
    img = tmp_path / "sparse.img"
    img.write_bytes(buf.getvalue())
    for cmd in (["restore", "-T", "-f", img], ["verify", "-f", img], ["lsbackvg", "-f", img]):
        r = aixsmit("cmd", *cmd)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (cmd, r.stderr)
        said = (r.stderr + r.stdout).strip().splitlines()
        assert any("a damaged sparse file map" in line for line in said), (cmd, said)
