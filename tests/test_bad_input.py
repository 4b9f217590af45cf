"""Bad input, generated: command lines, configuration files, --from mount tables, information
files and image bytes. Whatever comes in: a one-line error or a result, never a traceback or
"internal error", nothing written outside a restore's target, and memory bounded (an endless
input such as /dev/zero is refused after its size limit, under a 1 GB address-space cap).

The commands run in this process (``cli.run_cmd``), so each example costs milliseconds; only
commands that read are given generated arguments (never mksysb, umount, clone …).
"""

from __future__ import annotations

import io
import os
import re
import resource
import subprocess
import sys
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aixsmit import cli, config
from aixsmit.backup import archive, image_data
from aixsmit.errors import AixsmitError

from conftest import aixsmit

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> None:
    """What reaches the operator's terminal holds no control character but newline and tab: no
    C0 (ESC starts a sequence that retitles, clears or rewrites the screen), no DEL, no C1."""
    assert not CONTROLS.search(text), repr(text)


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        rc = cli.run_cmd(argv)
    except SystemExit as exc:  # argparse: a usage error, exit 2 (or the command's own code)
        rc = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    assert "internal error" not in out.err and "Traceback" not in out.err, (argv, out.err)
    # Neither of its own nor from what it was fed: names are shown through the one escaper.
    _shown(out.out)
    _shown(out.err)
    return rc, out.err


def _tiny_image(vgdata: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("./tmp/vgdata/datavg/datavg.data", vgdata), ("./data/file", b"x" * 700)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


GOOD = _tiny_image(image_data.dump([("vg_data", {"VGNAME": "datavg"}), ("fs_data", {"FS_NAME": "/data"})]).encode())

words = st.one_of(st.sampled_from(["-f", "-l", "-B", "-T", "-x", "--root", "--json", "--from", "--format", "-o",
                                   "--target", "/", "", "/dev/zero", "/nonexistent", "mountinfo", "aix", "-v"]),
                  st.text(max_size=12))


@FAST
@given(st.sampled_from(["lsmount", "sysonly", "lsvg", "lsmksysb", "lsbackvg", "verify", "restore"]),
       st.lists(words, max_size=5))
def test_command_lines(capsys, tmp_path_factory, cmd, args):
    if cmd == "restore" and "-x" in args:
        args = [a for a in args if a not in ("-x", "--target")] + ["-T"]  # list only: extraction is tested below
    _run(capsys, [cmd, *args])


@FAST
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_configuration_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "aixsmit.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        config.load(str(path))
    except AixsmitError as exc:
        assert "\n" not in str(exc)
        _shown(str(exc))


@FAST
@given(st.binary(max_size=600), st.sampled_from([None, "aix", "mountinfo"]))
def test_from_mount_tables(capsys, tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("from") / "table"
    path.write_bytes(data)
    _run(capsys, ["lsmount", "--from", str(path)] + (["--format", fmt] if fmt else []))


@FAST
@given(st.text(max_size=300))
def test_information_files(capsys, tmp_path_factory, text):
    img = tmp_path_factory.mktemp("info") / "vg.img"
    img.write_bytes(_tiny_image(text.encode("utf-8", "surrogateescape")))
    for cmd in (["lsbackvg", "-l", "-f", str(img)], ["verify", "-f", str(img)], ["restore", "-T", "-f", str(img)]):
        _run(capsys, cmd)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(GOOD)))
def test_damaged_images(capsys, tmp_path_factory, flips, cut):
    """Bytes of a small image changed and the image cut: every reader ends in a result or one
    line, and restore writes only inside its target."""
    base = tmp_path_factory.mktemp("img")
    data = bytearray(GOOD)
    for at, value in flips:
        data[at] = value
    img = base / "vg.img"
    img.write_bytes(bytes(data[:max(cut, 1)]))
    target = base / "target"
    target.mkdir()
    for cmd in (["lsbackvg", "-f", str(img)], ["lsbackvg", "-l", "-f", str(img)], ["verify", "-f", str(img)],
                ["restore", "-T", "-f", str(img)], ["restore", "-x", "-f", str(img), "--target", str(target)]):
        _run(capsys, cmd)
    assert sorted(os.listdir(base)) == ["target", "vg.img"]


ESC_NAMES = ["\x1b]0;x\x07", "\x1b[2J"]  # retitle the terminal; clear the screen
ESC_CASES = [
    "argument",  # argparse: unrecognized arguments: ESC...
    "missing image",  # lsmksysb -f NAME: the error names the file
    "member listed",  # lsmksysb / restore -T list member names
    "root",  # lsvg --root NAME: the error names the folder
]


@pytest.mark.parametrize("esc", ESC_NAMES)
@pytest.mark.parametrize("case", ESC_CASES)
def test_escape_sequences_in_names_reach_no_terminal(capsys, tmp_path, case, esc):
    """Names that hold ESC (a file, a member of an image, an argument) are shown escaped: the
    output holds no control character but newline and tab."""
    if case == "argument":
        _run(capsys, ["lsmount", f"x{esc}"])
    elif case == "missing image":
        _run(capsys, ["lsmksysb", "-f", str(tmp_path / f"img{esc}")])
    elif case == "member listed":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            ti = tarfile.TarInfo(f"./home/a{esc}b")
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
        img = tmp_path / "sys.mksysb"
        img.write_bytes(buf.getvalue())
        for cmd in (["lsmksysb", "-f", str(img)], ["restore", "-T", "-f", str(img)]):
            _run(capsys, cmd)
    else:
        _run(capsys, ["lsvg", "--root", str(tmp_path / f"r{esc}")])


def _capped(*argv: str, **env: str) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-m", "aixsmit", "cmd", *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, preexec_fn=cap, timeout=60)


@pytest.mark.parametrize("how", ["--from", "AIXSMIT_CONFIG", "lsmksysb", "exclude list"])
def test_endless_inputs_are_refused_in_bounded_memory(tmp_path, how):
    if how == "--from":
        r = _capped("lsmount", "--from", "/dev/zero")
        assert "/dev/zero: the mount table is larger than 16 MB" in r.stderr
    elif how == "AIXSMIT_CONFIG":
        r = _capped("lsvg", AIXSMIT_CONFIG="/dev/zero")
        assert "/dev/zero: the configuration file is larger than 1 MB" in r.stderr
    elif how == "lsmksysb":
        r = _capped("lsmksysb", "-f", "/dev/zero")
        assert r.stderr.strip().startswith("lsmksysb: /dev/zero")
    else:
        fs_list = tmp_path / "x"
        os.symlink("/dev/zero", fs_list)
        root = tmp_path / "root"
        root.mkdir()
        r = _capped("mksysb", "-x", str(fs_list), "--root", str(root), str(tmp_path / "img"))
        assert "is larger than 1 MB" in r.stderr
    assert r.returncode in (1, 2) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("dest", ["folder", "fifo", "missing-folder"])
def test_destinations_that_are_not_files_are_one_line(tmp_path, dest):
    root = tmp_path / "root"
    root.mkdir()
    path = tmp_path / "d"
    if dest == "folder":
        path.mkdir()
    elif dest == "fifo":
        os.mkfifo(path)
    else:
        path = tmp_path / "nowhere" / "img"
    r = aixsmit("cmd", "mksysb", "-i", "--root", root, path)
    assert r.returncode == 3 and r.stderr.startswith("0512-017 mksysb: Cannot write to"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_empty_root_is_a_usage_error():
    r = aixsmit("cmd", "lsvg", "--root", "")
    assert r.returncode == 2 and "argument --root: an empty path" in r.stderr


@pytest.mark.parametrize("levels", [["-9999"], ["-1", "-0"], ["-00"]])
def test_a_level_is_one_digit(tmp_path, levels):
    """argparse reads -9999 as four -9 flags: refused as a usage error, nothing written."""
    dest = tmp_path / "x.tar"
    r = aixsmit("cmd", "backup", *levels, "-f", dest, tmp_path / "not-mounted")
    assert r.returncode == 2 and "give one level, -0 (full) to -9" in r.stderr and not dest.exists(), r.stderr


@pytest.mark.parametrize("name", ["", " "])
def test_holders_of_an_empty_name_is_one_line(name):
    """An empty name is no mount point: it does not mean / (every holder of the machine)."""
    r = aixsmit("cmd", "holders", name)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stdout + r.stderr
    assert "give the mount point" in r.stderr


def test_non_numeric_information_fields_are_not_a_traceback(tmp_path):
    """FS_SIZE= abc, FS_USED_BYTES= 2^70 and friends: lsmksysb -l and clone's plan read them."""
    text = image_data.dump([("image_data", {"DATE_TIME": "x"}), ("vg_data", {"VGNAME": "rootvg"}),
                            ("fs_data", {"FS_NAME": "/", "FS_SIZE": "abc", "FS_SIZE_BYTES": "12e9",
                                         "FS_USED_BYTES": "-"})]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./image.data")
        ti.size = len(text)
        tf.addfile(ti, io.BytesIO(text))
    img = tmp_path / "sys.mksysb"
    img.write_bytes(buf.getvalue())
    r = aixsmit("cmd", "lsmksysb", "-l", "-f", img)
    assert r.returncode == 0 and "SHRINK SIZE (MB):       1" in r.stdout, r.stderr
    r = aixsmit("cmd", "clone", "--dry-run", "-f", img, "--map", "/=/dev/null", "--target", tmp_path / "t")
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_mksysb_i_writes_image_data_and_a_later_run_without_i_uses_it(troot):
    """As AIX's mkszfile: mksysb -i leaves /image.data (0600), so SMIT's "Generate new
    /image.data file? no" (mksysb without -i) works next time; a read-only root only warns."""
    tr = troot
    out = tr.base / "out"
    out.mkdir()
    assert aixsmit("cmd", "mksysb", "-i", "--root", tr.path, out / "a", env=tr.env()).returncode == 0
    assert tr.p("/image.data").read_text().startswith("##Command used for mkszfile")
    assert os.stat(tr.p("/image.data")).st_mode & 0o777 == 0o600
    r = aixsmit("cmd", "mksysb", "--root", tr.path, out / "b", env=tr.env())
    assert r.returncode == 0, r.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(tr.path)], check=True)
    r = aixsmit("cmd", "mksysb", "-i", "--root", tr.path, out / "c", env=tr.env())
    assert r.returncode == 0 and "image.data was not written: Read-only file system" in r.stderr, r.stderr
