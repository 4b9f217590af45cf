"""A corpus of hostile and damaged images, each run through every command that reads images.

Built here with Python's tarfile (the corpus is what an attacker or a failing tape hands the
operator): ``../`` and absolute names, a symbolic link then a write through it, hard links out,
``./etc`` as a link, GNU dumpdir records, a corrupt header, a truncated image, a size of 2^40,
members outside the volume group, a changed data byte, a file that is not an image. For each:
``lsmksysb``/``lsbackvg``, ``restore -T``, ``verify``, ``restore -x``, ``restvg`` (onto a real
loop-mounted /data under --root) and ``clone --dry-run`` (its plan reads the image; its restore
is restore -x's). Checked: nothing outside the target changes (a snapshot of
everything around it, before and after), no traceback, no "internal error", the last line of
an error is the one-line reason; and list, verify and restore agree: a damaged image is
reported with the same line by all three, and restore writes exactly the files the listing
shows.

``AIXSMIT_CORPUS_TABLE=FILE`` writes the table of attacks x commands (exit status, and the
line each said) to FILE.
"""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from aixsmit.backup import image_data
from aixsmit.backup import sums as blocksums
from aixsmit.backup.walk import TOC_VERSION

from conftest import aixsmit, needs_root

pytestmark = needs_root


def _info(kind: str) -> bytes:
    vg = "rootvg" if kind == "mksysb" else "datavg"
    fs = "/" if kind == "mksysb" else "/data"
    return image_data.dump([
        ("image_data", {"IMAGE_TYPE": "tar", "DATE_TIME": "Thu Dec 03 12:00:00 UTC 2026", "PLATFORM": "linux"}),
        ("vg_data", {"VGNAME": vg}),
        ("lv_data", {"VOLUME_GROUP": vg, "LOGICAL_VOLUME": "lv00", "TYPE": "ext4", "LPs": "1", "MOUNT_POINT": fs}),
        ("fs_data", {"FS_NAME": fs, "FS_SIZE": "2048", "FS_USED_BYTES": "4096"}),
    ]).encode()


class Image:
    """A tar image made member by member, as aixsmit lays one out: information file first,
    table of contents and checksums last (``finish``)."""

    def __init__(self, kind: str = "savevg"):
        self.kind = kind
        self.vg = "rootvg" if kind == "mksysb" else "datavg"
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.toc: list[bytes] = []
        info = "./image.data" if kind == "mksysb" else f"./tmp/vgdata/{self.vg}/{self.vg}.data"
        if kind == "savevg":
            self.dir("./tmp/vgdata/datavg", toc=False)
        self.file(info, _info(kind), toc=False)

    def _add(self, ti: tarfile.TarInfo, data: bytes | None = None, toc: bool = True, kind: bytes = b"f") -> None:
        ti.mtime = int(time.time())
        ti.uid = ti.gid = 0
        self.tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        if toc:
            self.toc.append(kind + (ti.name if ti.name.startswith("./") else "./" + ti.name).encode() + b"\0")

    def file(self, name: str, data: bytes = b"data\n", toc: bool = True) -> "Image":
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(data), 0o644
        self._add(ti, data, toc)
        return self

    def dir(self, name: str, toc: bool = True) -> "Image":
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        self._add(ti, None, toc, b"d")
        return self

    def symlink(self, name: str, to: str) -> "Image":
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, to, 0o777
        self._add(ti, None, True, b"l")
        return self

    def hardlink(self, name: str, to: str) -> "Image":
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.LNKTYPE, to
        self._add(ti, None, True)
        return self

    def dumpdir(self, name: str, keep: list[str]) -> "Image":
        """A GNU incremental directory record: restored with --listed-incremental, it deletes
        whatever the directory holds that ``keep`` does not name."""
        data = b"".join(b"Y" + k.encode() + b"\0" for k in keep) + b"\0"
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755  # as GNU tar writes it in the posix format
        ti.pax_headers = {"GNU.dumpdir": data.decode()}
        self._add(ti, None, True, b"d")
        return self

    def finish(self, sums: bool = True) -> bytes:
        toc = TOC_VERSION.encode() + b"\n" + b"".join(self.toc)
        ti = tarfile.TarInfo(f"./tmp/vgdata/{self.vg}/backup.toc")
        ti.size = len(toc)
        self._add(ti, toc, toc=False)
        if sums:
            end = self.tf.offset  # where the checksum member's header goes
            image = self.buf.getvalue()[:end]
            crcs = [blocksums.digest(image[i:i + blocksums.BLOCK]) for i in range(0, end, blocksums.BLOCK)]
            data = blocksums.encode(crcs, end)
            ti = tarfile.TarInfo(f"./tmp/vgdata/{self.vg}/backup.sums")
            ti.size = len(data)
            self.tf.addfile(ti, io.BytesIO(data))
        self.tf.close()
        return self.buf.getvalue()


def _member(data: bytes, name: str) -> tarfile.TarInfo:
    """The member ``name`` of the archive ``data`` (its header at .offset, its data at .offset_data)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            if m.name == name:
                return m
    raise KeyError(name)


def _base(kind: str = "savevg") -> Image:
    img = Image(kind)
    top = "./data" if kind == "savevg" else "."
    img.dir(top) if kind == "savevg" else None
    img.file(f"{top}/before", b"before\n")
    return img


def corpus(outside: str) -> dict[str, tuple[bytes, str]]:
    """name -> (image bytes, what a safe reader must do: "refuse" | "damaged" | "changed" | "ok")."""
    c: dict[str, tuple[bytes, str]] = {}
    c["dotdot"] = (_base().file("./data/../../../escape-dotdot", b"x").finish(), "refuse")
    c["absolute"] = (_base().file(f"{outside}/escape-absolute", b"x").finish(), "refuse")
    c["symlink-then-write"] = (_base().symlink("./data/link", outside).file("./data/link/escape-through-link", b"x")
                               .finish(), "refuse")
    c["hardlink-out"] = (_base().hardlink("./data/hl", f"{outside}/victim").finish(), "refuse")
    c["hardlink-dotdot"] = (_base().hardlink("./data/hl", "../../../victim").finish(), "refuse")
    c["etc-symlink"] = (_base("mksysb").symlink("./etc", outside).file("./etc/hostname", b"owned\n").finish(), "refuse")
    c["outside-group"] = (_base().file("./etc/cron.d/evil", b"* * * * * root sh\n").finish(), "outside")
    c["dumpdir"] = (_base().dumpdir("./data", ["before"]).finish(), "ok")
    # Damage: a header with a wrong checksum in the middle, an image cut inside a member's data,
    # a header saying 2^40 bytes, a changed byte of a file's data.
    good = _base().file("./data/one", b"1" * 3000).file("./data/two", b"2" * 3000).file("./data/three", b"3").finish()
    at = _member(good, "./data/two").offset
    bad = bytearray(good)
    bad[at + 100] ^= 0x55  # the mode field: the header's checksum no longer matches
    c["corrupt-header"] = (bytes(bad), "damaged")
    c["truncated"] = (good[:_member(good, "./data/two").offset_data + 1000], "damaged")
    huge = tarfile.TarInfo("./data/huge")
    huge.size = 1 << 40
    head = _base().finish()
    end = head.rstrip(b"\0")
    end = end + b"\0" * (-len(end) % 512)
    c["size-2^40"] = (end + huge.tobuf(tarfile.PAX_FORMAT) + b"h" * 4096, "damaged")
    changed = bytearray(good)
    changed[_member(good, "./data/one").offset_data + 10] ^= 1
    c["changed-byte"] = (bytes(changed), "changed")
    c["not-tar"] = (b"#!/bin/sh\necho not an image\n" * 40, "damaged")
    c["mksysb-ok"] = (_base("mksysb").file("./home/user/file", b"ok\n").finish(), "ok")
    return c


def _tree(path: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else os.readlink(p) if os.path.islink(p) else b""
            out[p] = (st.st_mode, st.st_size, data)
    return out


def _said(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def test_every_command_on_every_hostile_image(troot, tmp_path):
    tr = troot
    tr.loop_mount("/data", size_mb=16)
    tr.config.write_text("volume_groups:\n  datavg: [/data]\n")
    env = tr.env()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("victim\n")
    (tmp_path / "victim").write_text("victim\n")
    images = tmp_path / "images-corpus"
    images.mkdir()
    table: list[tuple[str, str, int, str]] = []
    for name, (data, expect) in corpus(str(outside)).items():
        img = images / f"{name}.img"
        img.write_bytes(data)
        target = tmp_path / f"target-{name}"
        target.mkdir()
        # What restvg restores onto: the group's file system, with a file of its own.
        (tr.p("/data") / "keep").write_text("mine\n")
        watched = {str(tmp_path / "victim"), str(outside)}
        before = {w: _tree(w) if os.path.isdir(w) else open(w).read() for w in watched}
        root_before = _tree(str(tr.path / "etc"))
        kind = "mksysb" if name.startswith(("mksysb", "etc-")) else "savevg"
        lister = "lsmksysb" if kind == "mksysb" else "lsbackvg"
        runs = {
            lister: aixsmit("cmd", lister, "-f", img, env=env),
            "restore -T": aixsmit("cmd", "restore", "-T", "-f", img, env=env),
            "verify": aixsmit("cmd", "verify", "-f", img, env=env),
            "restore -x": aixsmit("cmd", "restore", "-x", "-f", img, "--target", target, env=env),
            "restvg": aixsmit("cmd", "restvg", "--root", tr.path, "-f", img, env=env),
            # clone reads the image to plan (its restore is restore -x's, above): a dry run.
            "clone --dry-run": aixsmit("cmd", "clone", "--dry-run", "-f", img, "--map",
                                       f"{'/' if kind == 'mksysb' else '/data'}=/dev/null", "--target", target, env=env),
        }
        for cmd, r in runs.items():
            said = _said(r) if r.returncode else (r.stdout.strip().splitlines() or [""])[-1]
            table.append((name, cmd, r.returncode, said))
            assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (name, cmd, r.stderr)
        # Nothing outside the target changed, whatever the image.
        after = {w: _tree(w) if os.path.isdir(w) else open(w).read() for w in watched}
        assert after == before, name
        assert _tree(str(tr.path / "etc")) == root_before, name
        assert (tr.p("/data") / "keep").read_text() == "mine\n", name  # restvg never deletes
        restored = {os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs}
        if expect == "refuse":
            assert runs["verify"].returncode == 1 and "would be restored outside the target" in runs["verify"].stdout
            assert runs["restore -x"].returncode == 1 and "nothing was restored" in _said(runs["restore -x"]), name
            assert restored == set(), name
            assert runs["restvg"].returncode == 1, name
        elif expect == "outside":
            assert runs["restvg"].returncode == 1 and "outside the volume group" in _said(runs["restvg"]), name
            assert not tr.p("/etc/cron.d/evil").exists()
            assert runs["restore -x"].returncode == 0 and "etc/cron.d/evil" in restored  # inside its target
        elif expect == "damaged":
            # The same line from the listing, the table listing, verify and restore.
            if name == "not-tar":
                for cmd in (lister, "restore -T", "verify", "restore -x", "restvg", "clone --dry-run"):
                    assert runs[cmd].returncode == 1 and "not a backup image" in _said(runs[cmd]) + runs[cmd].stdout, (cmd, runs[cmd])
                continue
            lines = {cmd: _said(runs[cmd]).split(" is damaged: ", 1)[-1] for cmd in (lister, "restore -T", "restore -x")}
            lines["verify"] = runs["verify"].stdout.splitlines()[1].strip()
            assert runs["verify"].returncode == 1 and "FAILED" in runs["verify"].stdout
            assert len(set(lines.values())) == 1 and all(runs[c].returncode == 1 for c in lines), (name, lines)
            listed = {l[2:] for l in runs[lister].stdout.splitlines() if l.startswith("./")}
            files_listed = {n for n in listed if n.startswith("data/") and n.count("/") == 1}
            assert {n for n in restored if n.startswith("data/")} == files_listed, (name, listed, restored)
        elif expect == "changed":
            assert runs["verify"].returncode == 1 and "./data/one: its data is not what was written" in runs["verify"].stdout
            assert runs[lister].returncode == 0
            assert runs["restore -x"].returncode == 1 and "./data/one" in _said(runs["restore -x"])
        else:
            assert all(r.returncode == 0 for c, r in runs.items()
                       if c not in ("restvg", "clone --dry-run") or kind == "savevg" and c == "restvg"), (name, runs)
            if name == "dumpdir":
                # restvg ignores the deletions a level backup records: /data/keep is still there (above).
                assert runs["restvg"].returncode == 0
    if os.environ.get("AIXSMIT_CORPUS_TABLE"):
        with open(os.environ["AIXSMIT_CORPUS_TABLE"], "w") as f:
            for row in table:
                f.write(" | ".join(map(str, row)) + "\n")


def test_a_truncated_image_restores_what_can_be_read_and_says_what_was_lost(tmp_path):
    good = _base().file("./data/one", b"1" * 3000).file("./data/two", b"2" * 5000).file("./data/three", b"3").finish()
    img = tmp_path / "cut.img"
    img.write_bytes(good[:_member(good, "./data/two").offset_data + 1024])
    target = tmp_path / "t"
    target.mkdir()
    r = aixsmit("cmd", "restore", "-x", "-f", img, "--target", target)
    assert r.returncode == 1
    assert "./data/two: only 1024 of its 5000 bytes are in the image" in r.stderr.splitlines()[-1]
    assert (target / "data/one").read_bytes() == b"1" * 3000  # what could be read is restored
    assert not (target / "data/three").exists()
