"""Build a tree with every kind of entry a system image must keep, and compare two trees."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess


def build_tree(top: str) -> None:
    """Regular, empty, sparse and odd-named files; long paths; hard and symbolic links; a FIFO;
    device nodes; owners without a passwd entry; setuid and sticky modes; xattrs; an ACL;
    nanosecond times."""
    b = os.fsencode(top)
    os.makedirs(top, exist_ok=True)
    os.makedirs(os.path.join(top, "etc"), exist_ok=True)
    with open(os.path.join(top, "etc", "motd"), "w") as f:
        f.write("hello\n" * 100)
    open(os.path.join(top, "empty"), "w").close()
    with open(os.path.join(top, "with space and\ttab"), "w") as f:
        f.write("spaces")
    with open(os.path.join(top, "new\nline"), "w") as f:
        f.write("newline")
    with open(os.path.join(b, b"latin1-\xe9\xff"), "wb") as f:
        f.write(b"not utf-8")
    with open(os.path.join(top, "back\\slash"), "w") as f:
        f.write("bs")
    deep = os.path.join(top, "d" * 120, "e" * 120, "f" * 60)
    os.makedirs(deep)
    with open(os.path.join(deep, "long-" + "g" * 100), "w") as f:
        f.write("long path over 255 bytes")
    # Sparse: holes at the start, middle and end.
    with open(os.path.join(top, "sparse"), "wb") as f:
        f.seek(4 << 20)
        f.write(b"data in the middle")
        f.seek(12 << 20)
        f.write(b"end")
        f.truncate(16 << 20)
    os.link(os.path.join(top, "etc", "motd"), os.path.join(top, "motd-hardlink"))
    os.symlink("etc/motd", os.path.join(top, "motd-symlink"))
    os.symlink("/nonexistent/target", os.path.join(top, "dangling"))
    os.mkfifo(os.path.join(top, "fifo"))
    os.mknod(os.path.join(top, "null-dev"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(top, "blk-dev"), 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    with open(os.path.join(top, "owned"), "w") as f:
        f.write("uid 4242")
    os.chown(os.path.join(top, "owned"), 4242, 4343)
    os.chmod(os.path.join(top, "owned"), 0o4755)
    os.makedirs(os.path.join(top, "sticky"))
    os.chmod(os.path.join(top, "sticky"), 0o1777)
    x = os.path.join(top, "xattr-file")
    with open(x, "w") as f:
        f.write("xattrs")
    os.setxattr(x, "user.comment", b"kept by the image")
    os.setxattr(x, "trusted.aixsmit", b"trusted namespace")
    os.setxattr(x, "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))  # cap_net_bind_service
    acl = os.path.join(top, "acl-file")
    with open(acl, "w") as f:
        f.write("acl")
    subprocess.run(["setfacl", "-m", "u:4242:rw,g:4343:r", acl], check=True)
    # Nanosecond times, set last (on files and on directories).
    for name in ("etc/motd", "empty", "sparse", "owned"):
        os.utime(os.path.join(top, name), ns=(1_600_000_000_123_456_789, 1_600_000_001_987_654_321))
    os.utime(os.path.join(top, "etc"), ns=(1_500_000_000_111_111_111, 1_500_000_000_222_222_222))


def _xattrs(path: bytes) -> dict:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def snapshot(top: str, skip: tuple[str, ...] = ()) -> dict:
    """Everything a restore must reproduce, keyed by relative path (bytes)."""
    b = os.fsencode(top)
    out = {}
    groups: dict[tuple[int, int], list[bytes]] = {}
    skip_b = tuple(os.fsencode(s) for s in skip)
    for dirpath, dirnames, filenames in os.walk(b):
        rel_dir = os.path.relpath(dirpath, b)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip_b]
        for name in [b"."] + dirnames + filenames if dirpath == b else dirnames + filenames:
            path = os.path.join(dirpath, name) if name != b"." else dirpath
            rel = os.path.normpath(os.path.relpath(path, b))
            if rel in skip_b or rel == b"lost+found":
                continue
            st = os.lstat(path)
            entry = {
                "mode": st.st_mode,
                "uid": st.st_uid,
                "gid": st.st_gid,
                "xattrs": _xattrs(path),
            }
            if not stat.S_ISDIR(st.st_mode) or rel != b".":
                entry["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
                entry["size"] = st.st_size
                entry["sparse"] = st.st_blocks * 512 < st.st_size
                if st.st_nlink > 1:
                    groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                    entry["_inode"] = (st.st_dev, st.st_ino)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry["rdev"] = st.st_rdev
            out[rel] = entry
    for entry in out.values():
        if "_inode" in entry:
            entry["link_group"] = tuple(sorted(groups[entry.pop("_inode")]))
    return out


def diff(a: dict, b: dict) -> list[str]:
    problems = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            problems.append(f"extra: {k!r}")
        elif k not in b:
            problems.append(f"missing: {k!r}")
        elif a[k] != b[k]:
            fields = {f for f in set(a[k]) | set(b[k]) if a[k].get(f) != b[k].get(f)}
            problems.append(f"differs: {k!r}: " + ", ".join(f"{f}: {a[k].get(f)!r} != {b[k].get(f)!r}" for f in sorted(fields)))
    return problems
