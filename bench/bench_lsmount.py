"""lsmount on a 10,000-entry mountinfo against findmnt --tab-file on the same file.

The whole command is timed (interpreter start-up included), as an operator would run it.
findmnt is timed in its default (tree) output and in list output (-l), which skips the tree.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _util import best_of, command, report  # noqa: E402

N = 10_000


def main() -> int:
    if not shutil.which("findmnt"):
        print("findmnt not installed; skipped")
        return 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mountinfo")
        lines = ["1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
        for i in range(2, N + 1):
            lines.append(f"{i} 1 7:{i % 256} / /srv/m{i}/data\\040dir rw,relatime shared:{i} - ext4 /dev/loop{i % 256} rw")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        aix = [sys.executable, "-m", "aixsmit", "cmd", "lsmount", "--from", path, "--format", "mountinfo"]
        ours = best_of(5, command(aix))
        ours_json = best_of(5, command(aix + ["--json"]))
        tree = best_of(5, command(["findmnt", "--tab-file", path]))
        flat = best_of(5, command(["findmnt", "-l", "--tab-file", path]))
        print(f"{N} mounts")
        report("aixsmit cmd lsmount       ", ours, tree, "findmnt --tab-file   ", goal=1.0)
        report("aixsmit cmd lsmount       ", ours, flat, "findmnt -l --tab-file")
        report("aixsmit cmd lsmount --json", ours_json, tree, "findmnt --tab-file   ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
