"""lsmount with 100,000 mounts, against findmnt (needs root).

The mounts are made for real, in a private mount namespace of their own (unshare -m, with
private propagation): the host's table is never touched, and they vanish with the namespace.
Each is a bind mount of one small tmpfs directory. Timed in turns, as an operator runs them:
'aixsmit cmd lsmount' (interpreter start-up included) against 'findmnt -l' (list output), and
both with JSON output, all reading the namespace's own /proc/self/mountinfo. (findmnt's default
tree output takes minutes on so many mounts.)
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _util import in_turns, row, section, steps, summary  # noqa: E402

N = 100_000
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MS_BIND = 4096


def inside(base: str) -> int:
    """Run in the private namespace: make the mounts under ``base``, time the contenders."""
    libc = ctypes.CDLL(None, use_errno=True)
    src = os.path.join(base, "src")
    os.mkdir(src)
    if libc.mount(b"bench", src.encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs")
    with open("/proc/self/mountinfo") as f:
        inherited = sum(1 for _ in f)
    # fs.mount-max (100,000 by default) bounds the mounts of a namespace, the inherited ones
    # included: the table is filled up to it.
    with open("/proc/sys/fs/mount-max") as f:
        limit = min(N, int(f.read()))
    for i in range(limit - inherited - 1):
        d = os.path.join(base, f"data dir {i}")  # names with spaces, escaped as \040
        os.mkdir(d)
        if libc.mount(src.encode(), d.encode(), None, MS_BIND, None) != 0:
            raise OSError(ctypes.get_errno(), f"bind mount {d}")
    with open("/proc/self/mountinfo") as f:
        count = sum(1 for _ in f)
    section("lsmount", f"lsmount: {count} mounts (a private mount namespace); all CPUs free")
    t = in_turns(RUNS, {
        "lsmount": steps([sys.executable, "-m", "aixsmit", "cmd", "lsmount"]),
        "findmnt -l": steps(["findmnt", "-l"]),
        "lsmount --json": steps([sys.executable, "-m", "aixsmit", "cmd", "lsmount", "--json"]),
        "findmnt -J -l": steps(["findmnt", "-J", "-l"]),
    })
    row("aixsmit cmd lsmount / findmnt -l", t, "lsmount", "findmnt -l", 1.0, "wall")
    row("  the same in CPU time", t, "lsmount", "findmnt -l", None, "cpu")
    row("aixsmit cmd lsmount --json / findmnt -J -l", t, "lsmount --json", "findmnt -J -l", None, "wall")
    # findmnt's default tree output is left out: with 100,000 mounts one run took over two
    # minutes (its tree is built by searching every entry for each one's parent).
    summary()
    return 0  # the namespace, and every mount in it, ends with this process


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        return inside(sys.argv[2])
    if os.geteuid() != 0 or not shutil.which("findmnt") or not shutil.which("unshare"):
        print("needs root, findmnt and unshare (util-linux); skipped")
        return 0
    base = tempfile.mkdtemp(prefix="aixsmit-bench-mounts-")
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                            os.path.abspath(__file__), "--inside", base])
    finally:
        shutil.rmtree(base, ignore_errors=True)  # its mount points, empty once the namespace is gone
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
