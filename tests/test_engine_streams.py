"""Two tar streams joined into one image (aixsmit/backup/walk.py, streams.py: walk,
SecondStream, members_end): the image must read as one ordinary archive and restore exactly
what one tar would have made, whatever the split.
"""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest

from aixsmit import config
from aixsmit.backup import engine, streams
from aixsmit.backup.engine import BackupFailed, ImageRequest, create_image
from aixsmit.backup.streams import members_end
from aixsmit.errors import ConfigError
from aixsmit.fs.table import System
from aixsmit.fs.volume_groups import find

from conftest import aixsmit, need_tool, needs_root
from treecmp import build_tree, diff, snapshot


def _links_and_modes(top: str) -> None:
    """Hard links between directories (forty inodes: both streams get some), read-only
    directories that hold files, and directory times set last."""
    for d in range(4):
        os.makedirs(os.path.join(top, "links", f"d{d}"))
    for i in range(40):
        a = os.path.join(top, "links", f"d{i % 4}", f"file{i}")
        with open(a, "w") as f:
            f.write(f"linked {i}\n")
        os.link(a, os.path.join(top, "links", f"d{(i + 1) % 4}", f"also{i}"))
    ro = os.path.join(top, "readonly")
    os.makedirs(os.path.join(ro, "inner"))
    for i in range(30):
        with open(os.path.join(ro, "inner", f"f{i}"), "w") as f:
            f.write("x" * i)
    os.chmod(os.path.join(ro, "inner"), 0o555)
    os.chmod(ro, 0o500)
    for d in ("links/d0", "links", "readonly/inner", "readonly"):
        os.utime(os.path.join(top, d), ns=(1_400_000_000_000_000_001, 1_400_000_000_000_000_002))


def _many(tr, dirs: int, files: int, size) -> None:
    """/home/many/dD/fF: ``dirs`` directories of ``files`` files; ``size(f)`` bytes of
    random data each (they do not compress)."""
    for d in range(dirs):
        os.makedirs(tr.p(f"/home/many/d{d}"))
        for f in range(files):
            tr.p(f"/home/many/d{d}/f{f}").write_bytes(os.urandom(size(f)))


def _image(tr, streams: int, name: str, emit=None) -> str:
    system = System(root=str(tr.path))
    dest = str(tr.base / name)
    # Unpacked: a packed image is always one tar stream.
    req = ImageRequest("mksysb", find(system, "rootvg"), system, dest, streams=streams, pack=False)
    create_image(req, emit or (lambda line, stream: None))
    return dest


def _restore(tr, img: str, name: str) -> str:
    target = tr.base / name
    target.mkdir()
    r = aixsmit("cmd", "restore", "-x", "-q", "-f", img, "--target", target, env=tr.env())
    assert r.returncode == 0, r.stderr
    return str(target)


@needs_root
@need_tool("setfacl")
@pytest.mark.parametrize("streams", [1, 2])
def test_one_or_two_streams_restore_the_same_tree(troot, streams):
    tr = troot
    build_tree(str(tr.p("/home/alice")))
    _links_and_modes(str(tr.p("/home/bob")))
    img = _image(tr, streams, f"sys{streams}.mksysb")

    # GNU tar reads the joined image as one archive: no end marker in the middle, no warning.
    r = subprocess.run(["tar", "-tf", img], capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
    names = r.stdout.split(b"\n")[:-1]
    assert names[0] == b"./image.data" and names[-2:] == [b"./tmp/vgdata/rootvg/backup.toc",
                                                           b"./tmp/vgdata/rootvg/backup.sums"]
    assert aixsmit("cmd", "verify", "-f", img).returncode == 0

    target = _restore(tr, img, f"restored{streams}")
    assert diff(snapshot(str(tr.p("/home"))), snapshot(os.path.join(target, "home"))) == []
    # Each hard-linked pair comes back as one file, not two copies.
    for i in range(40):
        a = os.path.join(target, "home/bob/links", f"d{i % 4}", f"file{i}")
        b = os.path.join(target, "home/bob/links", f"d{(i + 1) % 4}", f"also{i}")
        assert os.stat(a).st_ino == os.stat(b).st_ino


@needs_root
def test_two_streams_split_the_files_and_keep_directories_last(troot):
    tr = troot
    _links_and_modes(str(tr.p("/home/bob")))
    img = _image(tr, 2, "sys.mksysb")
    with tarfile.open(img) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    # The first stream ends with the marker directory; every directory of the tree comes after
    # it, in the second stream, so a restore sets their modes and times last.
    cut = names.index("./tmp/vgdata/rootvg")
    first, second = members[1:cut], members[cut + 1:]
    assert first and all(not m.isdir() for m in first)
    assert any(m.isfile() for m in second) and any(m.isdir() for m in second)
    # All names of one inode are in one stream: whichever comes second is a link to the first
    # one there, never a second copy of the data.
    where = {m.name: ("first" if i < cut else "second") for i, m in enumerate(members)}
    by_name = {m.name: m for m in members}
    for i in range(40):
        pair = [f"./home/bob/links/d{i % 4}/file{i}", f"./home/bob/links/d{(i + 1) % 4}/also{i}"]
        links = [by_name[n] for n in pair if by_name[n].islnk()]
        assert len(links) == 1 and links[0].linkname in pair
        assert where[pair[0]] == where[pair[1]]
    assert {where[f"./home/bob/links/d{i % 4}/file{i}"] for i in range(40)} == {"first", "second"}


@needs_root
def test_second_stream_waits_when_its_memory_is_full(troot, monkeypatch):
    """With room for 64 KB only, the second tar waits for the first (the pipe fills); the
    image is still complete and exact."""
    tr = troot
    _many(tr, 20, 100, lambda f: 2000)
    monkeypatch.setattr(streams, "memory_cap", lambda: 64 << 10)
    img = _image(tr, 2, "sys.mksysb")
    # The second stream's share (2 MB or so) is more than its memory, a read and the pipe.
    assert os.path.getsize(img) > 5 << 20
    assert aixsmit("cmd", "verify", "-f", img).returncode == 0
    target = _restore(tr, img, "restored")
    assert diff(snapshot(str(tr.p("/home/many"))), snapshot(os.path.join(target, "home/many"))) == []


@needs_root
def test_second_stream_failure_is_0512_005_and_no_image(troot, monkeypatch):
    """A first stream that does not end as expected is never joined into an image."""
    tr = troot
    tr.p("/home/f").write_text("data\n")

    def wrong_end(fd, marker, record):
        raise OSError(5, "the first tar stream does not end with its marker member")

    monkeypatch.setattr(streams, "members_end", wrong_end)
    out: list[tuple[str, str]] = []
    with pytest.raises(BackupFailed) as err:
        _image(tr, 2, "sys.mksysb", lambda line, stream: out.append((stream, line)))
    assert str(err.value).startswith("0512-005 mksysb: Backup Completed.")
    assert any("does not end with its marker" in line for stream, line in out if stream == "stderr")
    assert not (tr.base / "sys.mksysb").exists()
    assert not [n for n in os.listdir(tr.base) if engine.PARTIAL in n]


@needs_root
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_one_cpu_of_two_makes_one_stream(troot):
    """The streams follow the CPUs the backup may run on (taskset -c 0 on a machine of two:
    one), not the machine's count: a second tar on the same CPU only adds the join's copy."""
    tr = troot
    tr.p("/home/f").write_text("data\n")
    cpus = os.sched_getaffinity(0)

    def marker_in(img: str) -> bool:  # the first stream's last member, where the second is joined
        with tarfile.open(img) as tf:
            return "./tmp/vgdata/rootvg" in tf.getnames()

    os.sched_setaffinity(0, {min(cpus)})
    try:
        one = _image(tr, 0, "one.mksysb")
    finally:
        os.sched_setaffinity(0, cpus)
    assert not marker_in(one)
    assert marker_in(_image(tr, 0, "all.mksysb"))


def test_members_end_finds_the_marker_and_refuses_anything_else(tmp_path):
    stage = tmp_path / "stage"
    (stage / "tmp/vgdata/rootvg").mkdir(parents=True)
    (stage / "zeros").write_bytes(b"\0" * 4096)  # a file whose data ends in zero blocks
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    opts = ["--format=posix", "-b", "128", "--no-recursion", "-C", str(stage)]
    subprocess.run(["tar", "-cf", good, *opts, "zeros", "./tmp/vgdata/rootvg"], check=True)
    subprocess.run(["tar", "-cf", bad, *opts, "./tmp/vgdata/rootvg", "zeros"], check=True)
    with open(good, "rb") as f:
        end = members_end(f.fileno(), b"./tmp/vgdata/rootvg", 128 * 512)
        data = f.read()
    assert end % 512 == 0 and data[end:].count(0) == len(data) - end  # only the end blocks follow
    with tarfile.open(fileobj=__import__("io").BytesIO(data[:end] + b"\0" * 1024)) as tf:
        assert [m.name for m in tf.getmembers()] == ["zeros", "./tmp/vgdata/rootvg"]
    with open(bad, "rb") as f, pytest.raises(OSError, match="does not end with its marker"):
        members_end(f.fileno(), b"./tmp/vgdata/rootvg", 128 * 512)


def test_backup_streams_config_key():
    assert config.parse("backup_streams: 1\n").backup_streams == 1
    assert config.parse("backup_streams: 2\n").backup_streams == 2
    assert config.parse("volume_groups: {}\n").backup_streams is None
    with pytest.raises(ConfigError, match=r"line 2: backup_streams must be 1"):
        config.parse("# streams\nbackup_streams: 3\n", "/etc/aixsmit/aixsmit.yaml")


@needs_root
def test_sigterm_at_any_moment_stops_cleanly(troot):
    """A signal can land anywhere: in the walk, while a feed thread holds its lock, while the
    second stream is being joined. Whenever it lands, mksysb must end with 0512-007 (or have
    finished), within seconds, leaving no image, no partial file and no tar behind."""
    import signal
    import sys
    import time

    tr = troot
    _many(tr, 100, 200, lambda f: f * 7)
    out = tr.base / "out"
    out.mkdir()
    img = out / "sys.mksysb"
    argv = [sys.executable, "-m", "aixsmit", "cmd", "mksysb", "-i", "-p", "--root", str(tr.path), str(img)]
    stopped = 0
    for delay in (0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.25, 0.3, 0.4):
        proc = subprocess.Popen(argv, env=tr.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The delay counts from mksysb's first line (it flushes each), not from the fork: on a
        # busy machine the interpreter's start alone can outlast every delay.
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"mksysb hung after SIGTERM at {delay} s")
        if proc.returncode == 0:
            img.unlink()
            continue
        if proc.returncode == -signal.SIGTERM:
            # Killed before its handlers were set (nothing begun) or after they were put back
            # (the image complete): never anything in between.
            if img.exists():
                assert aixsmit("cmd", "verify", "-f", img).returncode == 0
                img.unlink()
            assert os.listdir(out) == []
            continue
        stopped += 1
        assert proc.returncode == 4, err
        assert "0512-007 mksysb: Abnormal program termination." in err
        assert os.listdir(out) == [], (delay, err)
        # (tar writes to the descriptor of the file aixsmit created: its root names it)
        r = subprocess.run(["pgrep", "-f", f"tar --create .*-C {tr.path} "], capture_output=True)
        assert r.stdout == b"", f"a tar is left running after SIGTERM at {delay} s"
    assert stopped >= 3  # most signals land while the image is being made


@needs_root
def test_a_failed_join_stops_the_second_tar_and_leaves_no_image(troot, monkeypatch):
    """When the second stream cannot be written into the image (here: a descriptor it may not
    write; in life: no room left), its tar is stopped instead of waiting on its pipe for ever,
    and the backup fails as any write failure does."""
    tr = troot
    _many(tr, 10, 200, lambda f: 3000)
    monkeypatch.setattr(streams, "memory_cap", lambda: 64 << 10)  # the second tar must wait
    place = streams.SecondStream.place

    def read_only(self, fd, offset):
        place(self, os.open(os.devnull, os.O_RDONLY), offset)

    monkeypatch.setattr(streams.SecondStream, "place", read_only)
    out: list[tuple[str, str]] = []
    with pytest.raises(BackupFailed) as err:
        _image(tr, 2, "sys.mksysb", lambda line, stream: out.append((stream, line)))
    assert str(err.value).startswith("0512-005 mksysb: Backup Completed.")
    assert any("Bad file descriptor" in line for stream, line in out if stream == "stderr")
    assert not [n for n in os.listdir(tr.base) if n.startswith("sys.mksysb") or engine.PARTIAL in n]


@needs_root
def test_second_stream_without_splice_is_copied_by_reads_and_writes(troot, monkeypatch):
    """Some file systems cannot take splice(); the second stream is then copied by reads and
    writes, and the image is the same."""
    tr = troot
    _many(tr, 10, 100, lambda f: 2500)
    monkeypatch.setattr(streams, "memory_cap", lambda: 64 << 10)  # most of it after the first ends
    calls = []

    def no_splice(*args, **kwargs):
        calls.append(args)
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "splice", no_splice)
    img = _image(tr, 2, "sys.mksysb")
    assert len(calls) == 1  # tried once; the rest by reads and writes
    assert aixsmit("cmd", "verify", "-f", img).returncode == 0
    target = _restore(tr, img, "restored")
    assert diff(snapshot(str(tr.p("/home/many"))), snapshot(os.path.join(target, "home/many"))) == []


def test_checksums_follow_a_table_of_contents_whose_last_nul_opens_a_block(tmp_path):
    """The table of contents ends with one NUL; when that NUL is the only byte of the member's
    last block, the block is all zeros: the checksum member still goes after it (a clone of a
    398 MB image once found the checksums written over it)."""
    import io

    from aixsmit.backup import archive
    from aixsmit.backup.sums import archive_end

    toc = b"aixsmit-toc 2\n" + b"f./" + b"x" * (1024 - 14 - 3) + b"\0"  # 1025 bytes: the last block holds only the NUL
    assert len(toc) == 1025
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./tmp/vgdata/rootvg/backup.toc")
        ti.size = len(toc)
        tf.addfile(ti, io.BytesIO(toc))
    img = tmp_path / "img"
    img.write_bytes(buf.getvalue())
    fd = os.open(img, os.O_RDWR)
    try:
        end = archive_end(fd, 1)
        assert end == 512 + 3 * 512  # header, then three blocks of data
        archive.append_member(fd, end, "./tmp/vgdata/rootvg/backup.sums", b"sums\n")
    finally:
        os.close(fd)
    with tarfile.open(img) as tf:
        assert [m.name for m in tf] == ["./tmp/vgdata/rootvg/backup.toc", "./tmp/vgdata/rootvg/backup.sums"]


def test_toc_names_each_directory_once_and_reads_back_whole(tmp_path):
    """The table of contents (version 3) writes a directory's path once, not with each entry
    in it, and reads back (archive._parse_toc) as every ./name the walk handed tar, with its
    kind, in both streams' split; a version 2 table (whole ./paths) still reads."""
    from aixsmit.backup.archive import _parse_toc
    from aixsmit.backup.excludes import ExcludeList
    from aixsmit.backup.walk import walk

    root = tmp_path / "root"
    deep = root / "srv" / "a long directory name" / "below it"
    deep.mkdir(parents=True)
    for i in range(50):
        (deep / f"f{i}").write_text("x")
    (deep / "sub").mkdir()
    (deep / "sub" / "inner").write_text("y")
    (root / "srv" / "after").write_text("z")  # back in a parent after a subdirectory
    os.symlink("f1", deep / "link")
    os.mkfifo(root / "srv" / "fifo")
    toc = tmp_path / "toc"
    fed: list[bytes] = [b"", b""]

    def sink(seg):
        def add(chunk: bytes, names: int) -> None:
            assert chunk.count(b"\0") == names
            fed[seg] += chunk
        return add

    count = walk(str(root), [str(root)], set(), set(), ExcludeList(), [sink(0), sink(1)], str(toc))
    names = [n for n in (fed[0] + fed[1]).split(b"\0") if n]
    assert count == len(names) == 59  # ., srv, two directories, 50 files, sub, inner, after, link, fifo
    data = toc.read_bytes()
    # Its path is written where the walk enters or comes back to a directory below it (at most
    # five times here), not with each of the 53 entries below it.
    assert data.startswith(b"aixsmit-toc 3\n") and data.count(b"a long directory name") <= 5
    kinds = _parse_toc(data)
    assert set(kinds) == {os.fsdecode(n) if n != b"." else "." for n in names}
    assert kinds["./srv/a long directory name/below it/f7"] == "f" and kinds["./srv/a long directory name/below it/sub"] == "d"
    assert kinds["./srv/a long directory name/below it/link"] == "l" and kinds["./srv/fifo"] == "p"
    assert kinds["./srv/a long directory name/below it/sub/inner"] == "f" and kinds["./srv/after"] == "f"
    v2 = b"aixsmit-toc 2\n" + b"".join(k.encode() + n.encode() + b"\0" for n, k in kinds.items())
    assert _parse_toc(v2) == kinds
