"""Parsers for AIX `mount` output and Linux mountinfo (aix-smit.md §3.1, linux-backup.md §3.1)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from aixsmit.errors import ParseError
from aixsmit.fs.mounts import _parse_mountinfo_lines, escape, parse_aix_mount, parse_mountinfo, relative_to_root, unescape

from conftest import FIXTURES


def test_aix_mount_real_capture():
    # aix-smit.md §3.1: the real capture, header and dashed line included.
    mounts = parse_aix_mount((FIXTURES / "aix" / "mount.out").read_text())
    assert [m.mount_point for m in mounts] == [
        "/", "/usr", "/var", "/tmp", "/home", "/admin", "/proc", "/opt", "/var/adm/ras/livedump", "/aha",
    ]
    hd4 = mounts[0]
    assert (hd4.node, hd4.device, hd4.vfs, hd4.date, hd4.options) == (
        "", "/dev/hd4", "jfs2", "Nov 07 19:11", ("rw", "log=/dev/hd8"))
    # A mount point long enough to push the columns right.
    livedump = mounts[8]
    assert (livedump.device, livedump.vfs, livedump.date) == ("/dev/livedump", "jfs2", "Nov 07 19:11")


def test_aix_mount_node_column_and_empty_options():
    # aix-smit.md §3.1: the nfs3 row has a node and no options; the autofs row has no node.
    net, mnt = parse_aix_mount((FIXTURES / "aix" / "mount-remote.out").read_text())
    assert (net.node, net.device, net.mount_point, net.vfs) == ("", "-hosts", "/net", "autofs")
    assert net.options == ("nosuid", "vers=3", "rw", "nobrowse", "ignore")
    assert (mnt.node, mnt.device, mnt.mount_point, mnt.vfs, mnt.date, mnt.options) == (
        "x64lmwbief4", "/install/outils", "/mnt", "nfs3", "Dec 07 11:53", ())


def test_aix_mount_without_header_and_with_trimmed_indent():
    text = "/dev/hd4 / jfs2 Nov 07 19:11 rw,log=/dev/hd8\nsrv /exp /mnt nfs3 Dec 07 11:53 rw\n"
    a, b = parse_aix_mount(text)
    assert (a.node, a.device, a.mount_point) == ("", "/dev/hd4", "/")
    assert (b.node, b.device, b.mount_point, b.options) == ("srv", "/exp", "/mnt", ("rw",))


def test_aix_mount_malformed_line_names_its_number():
    text = (FIXTURES / "aix" / "mount.out").read_text().splitlines()
    text[4] = "         /dev/hd2         /usr             jfs2   yesterday rw"
    with pytest.raises(ParseError, match=r"^line 5: "):
        parse_aix_mount("\n".join(text))


MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n"
    "42 27 0:39 / /tmp/mt\\040test rw,relatime shared:5 master:2 - tmpfs tmpfs rw\n"
    "43 27 7:1 /export/home /home rw,nosuid - ext4 /dev/loop1 rw\n"
    "44 27 7:2 / /odd\\011tab\\012nl\\134bs rw - ext4 /dev/loop2 rw\n"
)


def test_mountinfo_fields_escapes_optional_and_bind():
    m = parse_mountinfo(MOUNTINFO)
    assert [x.mount_point for x in m] == ["/proc", "/", "/tmp/mt test", "/home", "/odd\ttab\nnl\\bs"]
    assert m[1].dev == "254:0" and m[1].vfs == "ext4" and m[1].device == "/dev/vda"
    assert m[1].options == ("rw", "relatime") and m[1].super_options == ("rw", "discard")
    assert m[2].mount_id == 42 and m[2].parent_id == 27  # optional fields skipped, separator found
    assert m[3].fs_root == "/export/home" and m[3].is_bind
    assert not m[1].is_bind


@pytest.mark.parametrize("bad,lineno", [
    ("22 27 0:21 / /proc rw,relatime proc proc rw", 1),  # no separator
    ("x 27 0:21 / /proc rw - proc proc rw", 1),
    ("22 27 zero / /proc rw - proc proc rw", 1),
    ("22 27 0:21 / proc rw - proc proc rw", 1),  # not absolute
])
def test_mountinfo_malformed_names_line(bad, lineno):
    text = MOUNTINFO.splitlines()
    text.insert(2, bad)
    with pytest.raises(ParseError, match=r"^line 3: "):
        parse_mountinfo("\n".join(text))


def test_this_host_mountinfo_parses():
    mounts = parse_mountinfo(os.fsdecode(open("/proc/self/mountinfo", "rb").read()))
    assert any(m.mount_point == "/" for m in mounts)


def test_relative_to_root():
    m = parse_mountinfo(
        "1 0 8:1 / / rw - ext4 /dev/sda rw\n"
        "2 1 0:5 / /tmp/r rw - tmpfs t rw\n"
        "3 2 7:1 / /tmp/r/home rw - ext4 /dev/loop1 rw\n"
        "4 1 7:2 / /tmp/rx rw - ext4 /dev/loop2 rw\n"
    )
    rel = relative_to_root(m, "/tmp/r")
    assert [(x.mount_point, x.path) for x in rel] == [("/", "/tmp/r"), ("/home", "/tmp/r/home")]


# Any mount point name survives the kernel's escaping and our parsing (bytes other than NUL and '/').
names = st.lists(
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\x00" not in b and b"/" not in b and b not in (b".", b"..")),
    min_size=1, max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(names)
def test_any_mount_point_survives_escaping(parts):
    raw = b"/" + b"/".join(parts)
    path = os.fsdecode(raw)
    line = f"50 1 7:3 / {escape(path)} rw,relatime shared:9 - ext4 {escape(path)} rw\n"
    (m,) = parse_mountinfo(line)
    assert os.fsencode(m.mount_point) == raw
    assert os.fsencode(m.device) == raw
    assert unescape(escape(path)) == path


# A mountinfo table is read with one search when every line has the kernel's shape, field by
# field otherwise: both readings give the same mounts, or the same error, for any table.
_token = st.text(alphabet="ab0479:/-\\\t,=", min_size=0, max_size=6)
_field = st.one_of(_token, st.sampled_from(["-", "12", "007", "0:21", "/", "/x\\040y", "shared:1", "master:2",
                                            "unbindable", "rw", "\\134040", "/a\\011\\xyz"]))
_kernel_shape = st.tuples(
    st.from_regex(r"[0-9]{1,3} [0-9]{1,3} [0-9]{1,3}:[0-9]{1,3}", fullmatch=True), _field, _field, _field,
    st.sampled_from(["", " shared:1", " master:3 shared:2", " unbindable", " -x"]), _field, _field, _field,
).map(lambda t: f"{t[0]} {t[1]} /{t[2]} {t[3]}{t[4]} - {t[5]} {t[6]} {t[7]}")
_line = st.one_of(
    st.lists(_field, min_size=0, max_size=13).map(" ".join),
    st.tuples(st.lists(_field, min_size=6, max_size=6), st.lists(_field, max_size=2), st.lists(_field, min_size=2, max_size=4))
    .map(lambda t: " ".join(t[0] + t[1] + ["-"] + t[2])),
    st.sampled_from(MOUNTINFO.splitlines()),
    _kernel_shape, _kernel_shape, _kernel_shape,
)


def _outcome(parse, text):
    try:
        return parse(text)
    except ParseError as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@given(st.lists(_line, min_size=0, max_size=4), st.sampled_from(["\n", ""]))
def test_mountinfo_one_search_reads_as_field_by_field(lines, end):
    text = "\n".join(lines) + end
    assert _outcome(parse_mountinfo, text) == _outcome(_parse_mountinfo_lines, text)
