"""mksysb against plain 'tar -cf' of the same 50,000-file tree, in the same run (needs root).

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

sys.path.insert(0, os.path.dirname(__file__))
from _util import best_of_each, command, report  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aixsmit.backup.engine import FILE_BLOCKS  # noqa: E402

FILES = 50_000
PER_DIR = 100


def make_tree(root: str) -> None:
    payload = b"x" * 2048
    for d in range(FILES // PER_DIR):
        path = os.path.join(root, "home", f"user{d // 50}", f"dir{d}")
        os.makedirs(path, exist_ok=True)
        for f in range(PER_DIR):
            with open(os.path.join(path, f"file{f}.txt"), "wb") as fh:
                fh.write(payload[: (f * 37) % 2048])


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (tmpfs mounts); skipped")
        return 0
    base = tempfile.mkdtemp(prefix="aixsmit-bench-")
    root, out = os.path.join(base, "root"), os.path.join(base, "out")
    os.mkdir(root)
    os.mkdir(out)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "benchroot", root], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "benchout", out], check=True)
    env = dict(os.environ, AIXSMIT_STATE_DIR=os.path.join(base, "state"), AIXSMIT_CONFIG=os.path.join(base, "none.yaml"))
    open(env["AIXSMIT_CONFIG"], "w").close()
    try:
        make_tree(root)
        img = os.path.join(out, "sys.mksysb")
        argv = [sys.executable, "-m", "aixsmit", "cmd", "mksysb", "-i", "--root", root, img]

        def mksysb():
            r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                raise SystemExit(f"mksysb failed: {r.stderr}")

        t = best_of_each(
            7,
            tar=command(["tar", "-cf", os.path.join(out, "ref.tar"), "-C", root, "."]),
            ours=mksysb,
            same_flags=command(["tar", "--create", "--format=posix", "--xattrs", "--xattrs-include=*", "--sparse",
                                f"--blocking-factor={FILE_BLOCKS}", "-f", os.path.join(out, "ref2.tar"), "-C", root, "."]),
        )
        tar, ours, same_flags = t["tar"], t["ours"], t["same_flags"]
        print(f"{FILES} files in {FILES // PER_DIR} directories")
        report("aixsmit cmd mksysb -i       ", ours, tar, "tar -cf               ", goal=1.2)
        report("aixsmit cmd mksysb -i       ", ours, same_flags, "tar with mksysb's flags")
    finally:
        for m in (root, out):
            subprocess.run(["umount", m])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
