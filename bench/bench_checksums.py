"""What the per-file checksums cost (needs root): mksysb with them against mksysb without them,
and verify (which reads and checks every byte) against GNU tar reading the same image.

The checksums (a XXH3 checksum per MiB of the image) are computed by a thread that reads back what
tar has written, from the page cache, while tar writes; only the last blocks are read after
tar ends; they are written as the image's last member. The goal:
at most 10% on mksysb. Both runs are the same in-process create_image call on the same tree,
taken in turns; "without" leaves the checksum step out (patched to nothing).

Two trees on a tmpfs that plays the root file system, images on another tmpfs: many small
files (the per-member cost) and fewer large ones (the per-byte cost).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _util import best_of_each, report  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aixsmit.backup import archive, engine, sums  # noqa: E402
from aixsmit.backup.engine import ImageRequest, create_image  # noqa: E402
from aixsmit.fs.table import System  # noqa: E402
from aixsmit.fs.volume_groups import find  # noqa: E402


class NoSums:
    """The checksum step left out: no thread, nothing read back."""

    def __init__(self, *a, **kw):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def finish(self, end):
        return b""


def make_tree(root: str, files: int, largest: int) -> int:
    payload = os.urandom(largest)
    total = 0
    for i in range(files):
        path = os.path.join(root, "home", f"dir{i // 100}")
        if i % 100 == 0:
            os.makedirs(path, exist_ok=True)
        size = (i * 7919) % (largest + 1)
        with open(os.path.join(path, f"f{i}"), "wb") as fh:
            fh.write(payload[:size])
        total += size
    return total


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (tmpfs mounts); skipped")
        return 0
    base = tempfile.mkdtemp(prefix="aixsmit-bench-sums-")
    root, out = os.path.join(base, "root"), os.path.join(base, "out")
    os.mkdir(root)
    os.mkdir(out)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "benchroot", root], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "benchout", out], check=True)
    os.environ["AIXSMIT_STATE_DIR"] = os.path.join(base, "state")
    os.environ["AIXSMIT_CONFIG"] = os.path.join(base, "none.yaml")
    open(os.environ["AIXSMIT_CONFIG"], "w").close()
    real_sums, real_append = sums.BlockSums, archive.append_member
    try:
        for label, files, largest in (("20,000 files of 0-2 KB", 20_000, 2048),
                                      ("2,000 files of 0-256 KB", 2_000, 256 << 10)):
            subprocess.run(["find", root, "-mindepth", "1", "-delete"], check=True)
            size = make_tree(root, files, largest)
            system = System(root=root)
            vg = find(system, "rootvg")
            img = os.path.join(out, "sys.mksysb")

            def run(with_sums: bool):
                def go():
                    if os.path.exists(img):
                        os.unlink(img)
                    if not with_sums:
                        engine.BlockSums = NoSums
                        archive.append_member = lambda fd, end, name, data, record=0: 0
                    try:
                        create_image(ImageRequest("mksysb", vg, system, img), lambda line, stream: None)
                    finally:
                        engine.BlockSums, archive.append_member = real_sums, real_append
                return go

            t = best_of_each(5, without=run(False), with_sums=run(True))
            print(f"== {label} ({size >> 20} MB of data)")
            report("mksysb with checksums", t["with_sums"], t["without"], "without", goal=1.10)
            # The image of the last run has its checksums: verify reads and checks it all.
            v = best_of_each(5, verify=lambda: archive.verify(img),
                             tar=lambda: subprocess.run(["tar", "-xOf", img], stdout=subprocess.DEVNULL, check=True))
            report("verify (every byte, XXH3)", v["verify"], v["tar"], "tar -xOf > /dev/null")
    finally:
        subprocess.run(["umount", root])
        subprocess.run(["umount", out])
        subprocess.run(["rm", "-rf", base])
    return 0


if __name__ == "__main__":
    sys.exit(main())
