"""mksysb against plain 'tar -cf' of the same 50,000-file tree, in the same run (needs root).

Two trees: the one the goal is set for (files of 0-2 KB, 50 MB in all), where start-up and
the per-file work count most, and the same files 20 times larger (1 GB), closer to a system.

The tree lives on a tmpfs mounted for the run (it plays the root file system), and both
archives are written to another tmpfs, so the disk does not blur the comparison. mksysb is
timed as the whole command an operator runs (start-up, walk, information file, progress
lines, fsync and rename included); the goal is at most 1.2x tar's wall time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import best_of_each, command, report  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aixsmit.backup.streams import FILE_BLOCKS  # noqa: E402

FILES = 50_000
PER_DIR = 100


def make_tree(root: str, largest: int = 2048) -> None:
    payload = b"x" * largest
    for d in range(FILES // PER_DIR):
        path = os.path.join(root, "home", f"user{d // 50}", f"dir{d}")
        os.makedirs(path, exist_ok=True)
        for f in range(PER_DIR):
            with open(os.path.join(path, f"file{f}.txt"), "wb") as fh:
                fh.write(payload[: (f * 37 * largest // 2048) % largest])


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (tmpfs mounts); skipped")
        return 0
    base = tempfile.mkdtemp(prefix="aixsmit-bench-")
    root, out = os.path.join(base, "root"), os.path.join(base, "out")
    os.mkdir(root)
    os.mkdir(out)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "benchroot", root], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "benchout", out], check=True)
    env = dict(os.environ, AIXSMIT_STATE_DIR=os.path.join(base, "state"), AIXSMIT_CONFIG=os.path.join(base, "none.yaml"))
    open(env["AIXSMIT_CONFIG"], "w").close()
    try:
        for label, largest in (("files of 0-2 KB, 50 MB", 2048), ("files of 0-40 KB, 1 GB", 40960)):
            subprocess.run(["find", root, "-mindepth", "1", "-delete"], check=True)
            make_tree(root, largest)
            img = os.path.join(out, "sys.mksysb")
            argv = [sys.executable, "-m", "aixsmit", "cmd", "mksysb", "-i", "--root", root, img]

            def fresh(fn, path):
                # Every run writes a new file: what is timed is making the archive, not freeing
                # the previous one (tar -cf truncates it in place; mksysb keeps it until the new
                # image is complete, which on a tmpfs costs the memory of both).
                def go():
                    if os.path.exists(path):
                        os.unlink(path)
                    t0 = time.perf_counter()
                    fn()
                    return time.perf_counter() - t0
                return go

            def mksysb():
                r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"mksysb failed: {r.stderr}")

            ref, ref2 = os.path.join(out, "ref.tar"), os.path.join(out, "ref2.tar")
            t = best_of_each(
                7 if largest <= 2048 else 5,
                tar=fresh(command(["tar", "-cf", ref, "-C", root, "."]), ref),
                ours=fresh(mksysb, img),
                same_flags=fresh(command(["tar", "--create", "--format=posix", "--xattrs", "--xattrs-include=*",
                                          "--sparse", f"--blocking-factor={FILE_BLOCKS}", "-f", ref2,
                                          "-C", root, "."]), ref2),
            )
            tar, ours, same_flags = t["tar"], t["ours"], t["same_flags"]
            print(f"{FILES} files in {FILES // PER_DIR} directories, {label}")
            report("aixsmit cmd mksysb -i       ", ours, tar, "tar -cf               ", goal=1.2 if largest <= 2048 else None)
            report("aixsmit cmd mksysb -i       ", ours, same_flags, "tar with mksysb's flags")
    finally:
        for m in (root, out):
            subprocess.run(["umount", m])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
