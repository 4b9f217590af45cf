"""Backups as a user measures them: mksysb, restore, verify and a level 1 against GNU tar doing
the same work, each contender in turns, wall time and CPU time of the whole process tree.

Trees (each an ext4 file system on a loop device, built once and kept in the cache directory,
$AIXSMIT_BENCH_CACHE or /var/tmp/aixsmit-bench):
  small  50,000 files of 0-2 KB (50 MB) in 500 directories: start-up and per-file work count most
  big    the same 50,000 files at 0-40 KB (1 GB)
  usr    a copy of this machine's /usr (real names, sizes, links)
  million 1,000,000 empty files, for mksysb's peak memory
Images are written to another ext4 file system on a loop device (made anew for each run of the
bench), never to tmpfs; every archive the reference tar writes is synced to disk (`sync FILE`),
as mksysb syncs its image before renaming it.

Rows (--rows or $BENCH_ROWS, comma-separated; default: small,restore,level):
  small, big, usr   mksysb (packed) against tar with the image's flags piped through zstd -T0,
                    and mksysb -p against tar with the image's flags; in three conditions
                    (small and big: all CPUs free, both on one CPU, a CPU-bound neighbour;
                    usr: free only); the packed image's size against tar | zstd's
  restore           restore -x against tar -x, verify against tar -t, of the same image (small;
                    with big or usr in --rows, of those trees too); for the unpacked image, verify
                    also against tar -xO > /dev/null (tar reading every byte, as verify must)
  level             a level 1 after 1% of the files changed, against GNU tar --listed-incremental
  rss               mksysb's peak memory (RSS) on 1,000,000 files
  all               every row above
--runs N (or $BENCH_RUNS) sets the runs per row (default: 5 for small and level, 3 for big and
the restore rows, 2 for usr).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import CONDITIONS, condition, in_turns, line, row, run, section, steps, summary  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aixsmit.backup.archive import TAR_EXTRACT_OPTS  # noqa: E402
from aixsmit.backup.streams import FILE_BLOCKS, PACK_PROGRAM  # noqa: E402

CACHE = os.environ.get("AIXSMIT_BENCH_CACHE", "/var/tmp/aixsmit-bench")
PY = sys.executable
# What mksysb gives tar (streams.TAR_CREATE_OPTS, less what only a file list needs).
TAR_FLAGS = ["--format=posix", "--xattrs", "--xattrs-include=*", "--sparse", f"--blocking-factor={FILE_BLOCKS}"]
GOAL_FREE, GOAL_BUSY, GOAL_READ, GOAL_LEVEL, RSS_GOAL = 1.0, 1.1, 1.1, 1.1, 200 << 20


# --- trees, built once --------------------------------------------------------------------

def _small_tree(root: str, largest: int, files: int = 50_000, per_dir: int = 100) -> None:
    payload = os.urandom(largest // 2) * 2  # half random: packs about as a system's files do
    for d in range(files // per_dir):
        path = os.path.join(root, "home", f"user{d // 50}", f"dir{d}")
        os.makedirs(path, exist_ok=True)
        for f in range(per_dir):
            with open(os.path.join(path, f"file{f}.txt"), "wb") as fh:
                fh.write(payload[: (f * 37 * largest // 2048) % largest])


def _million(root: str) -> None:
    for d in range(1000):
        path = os.path.join(root, "home", f"d{d}")
        os.makedirs(path)
        for f in range(1000):
            os.close(os.open(os.path.join(path, f"f{f}"), os.O_CREAT | os.O_WRONLY, 0o644))


def _usr(root: str) -> None:
    subprocess.run(["cp", "-a", "--one-file-system", "/usr", os.path.join(root, "usr")], check=True)


TREES = {  # name: (image size, inodes, builder)
    "small": ("1G", 200_000, lambda r: _small_tree(r, 2048)),
    "big": ("3G", 200_000, lambda r: _small_tree(r, 40960)),
    "usr": ("12G", 1_000_000, _usr),
    "million": ("3G", 1_100_000, _million),
}


class Bench:
    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="aixsmit-bench-")
        self.mounts: list[str] = []
        self.loops: list[str] = []
        self.trees: dict[str, str] = {}
        os.makedirs(CACHE, exist_ok=True)
        # One bench at a time per cache: two would mount the same tree image through two loop
        # devices (ext4 is not a cluster file system; the images carry MMP, which refuses the
        # second mount) and share out.img; and each would time the other's load.
        self._lock = os.open(os.path.join(CACHE, "bench.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  (another bench is using {CACHE}: waiting for it)", flush=True)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.env = dict(os.environ, AIXSMIT_STATE_DIR=os.path.join(self.base, "state"),
                        AIXSMIT_CONFIG=os.path.join(self.base, "none.yaml"))
        open(self.env["AIXSMIT_CONFIG"], "w").close()
        # The output file system: ext4 on a loop device, anew each time.
        out_img = os.path.join(CACHE, "out.img")
        if os.path.exists(out_img):
            os.unlink(out_img)
        self.out = self._mount_image(out_img, "24G", 2_000_000, "out", fresh=True)

    def _mount_image(self, img: str, size: str, inodes: int, name: str, fresh: bool) -> str:
        if fresh:
            subprocess.run(["truncate", "-s", size, img], check=True)
            # MMP: a second mount of the same image (another bench on this cache) is refused.
            subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(inodes), "-O", "mmp", "-E", "lazy_itable_init=1,mmp_update_interval=1",
                            img], check=True)
        dev = subprocess.run(["losetup", "-f", "--show", img], check=True, capture_output=True, text=True).stdout.strip()
        self.loops.append(dev)
        mp = os.path.join(self.base, name)
        os.mkdir(mp)
        subprocess.run(["mount", "-o", "noatime", dev, mp], check=True)
        self.mounts.append(mp)
        return mp

    def tree(self, name: str) -> str:
        """The tree's root, mounted (built into the cache the first time)."""
        if name in self.trees:
            return self.trees[name]
        size, inodes, build = TREES[name]
        img = os.path.join(CACHE, f"{name}.img")
        ready = os.path.exists(img + ".complete")
        if not ready:
            print(f"  (building the {name} tree in {img}: once)", flush=True)
            for stale in (img, img + ".complete"):
                if os.path.exists(stale):
                    os.unlink(stale)
        root = self._mount_image(img, size, inodes, name, fresh=not ready)
        if not ready:
            build(root)
            subprocess.run(["sync", "-f", root], check=True)
            open(img + ".complete", "w").close()
        self.trees[name] = root
        return root

    def close(self) -> None:
        for mp in reversed(self.mounts):
            subprocess.run(["umount", mp])
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        out_img = os.path.join(CACHE, "out.img")
        if os.path.exists(out_img):
            os.unlink(out_img)

    # --- contenders ---

    def gone(self, *paths: str):
        def before() -> None:
            for p in paths:
                if os.path.isdir(p):
                    shutil.rmtree(p)
                    os.mkdir(p)
                elif os.path.exists(p):
                    os.unlink(p)
        return before

    def mksysb(self, root: str, dest: str, *flags: str):
        return steps([PY, "-m", "aixsmit", "cmd", "mksysb", "-i", *flags, "--root", root, dest], before=self.gone(dest))

    def tar(self, root: str, dest: str, packed: bool):
        comp = [f"--use-compress-program={PACK_PROGRAM}"] if packed else []
        return steps(["tar", "--create", *TAR_FLAGS, *comp, "-f", dest, "-C", root, "."], ["sync", dest],
                     before=self.gone(dest))


def _mksysb_rows(b: Bench, name: str, root: str, runs: int, conditions: list[str]) -> dict[str, str]:
    out = b.out
    img, img_p = os.path.join(out, "sys.mksysb"), os.path.join(out, "sysp.mksysb")
    ref, ref_p = os.path.join(out, "ref.tar.zst"), os.path.join(out, "ref.tar")
    for cond in conditions:
        goal = GOAL_FREE if cond == "free" else GOAL_BUSY
        section(f"{name}, {cond}", f"{name}: {CONDITIONS[cond]}")
        with condition(cond) as cpus:
            packed = in_turns(runs, {"mksysb": b.mksysb(root, img), "tar|zstd": b.tar(root, ref, True)}, cpus, b.env)
            row("mksysb (packed) / tar ... -I 'zstd -T0'", packed, "mksysb", "tar|zstd", goal, "wall")
            row("  the same in CPU time (packed)", packed, "mksysb", "tar|zstd", goal, "cpu")
            plain = in_turns(runs, {"mksysb -p": b.mksysb(root, img_p, "-p"), "tar": b.tar(root, ref_p, False)},
                             cpus, b.env)
            row("mksysb -p / tar with the image's flags", plain, "mksysb -p", "tar", goal, "wall")
            row("  the same in CPU time (-p)", plain, "mksysb -p", "tar", goal, "cpu")
    size, ref_size, plain_size = os.path.getsize(img), os.path.getsize(ref), os.path.getsize(img_p)
    line("packed image size / tar | zstd's", f"{size / 1e6:9.1f} MB vs {ref_size / 1e6:.1f} MB: "
         f"{size / ref_size:.3f}x (unpacked image {plain_size / 1e6:.1f} MB)", "<= 1.00x", size <= ref_size)
    return {"packed": img, "unpacked": img_p}


def _read_rows(b: Bench, name: str, images: dict[str, str], runs: int) -> None:
    t1, t2 = os.path.join(b.out, "restored"), os.path.join(b.out, "tar-x")
    for d in (t1, t2):
        os.makedirs(d, exist_ok=True)
    section(f"{name}, read", f"{name}: restore and verify, all CPUs free")
    for kind, img in images.items():
        comp = ["--zstd"] if kind == "packed" else []
        t = in_turns(runs, {
            "restore": steps([PY, "-m", "aixsmit", "cmd", "restore", "-x", "-q", "-f", img, "--target", t1],
                             before=b.gone(t1)),
            "tar -x": steps(["tar", "--extract", *comp, "-f", img, "-C", t2, *TAR_EXTRACT_OPTS], before=b.gone(t2)),
        }, None, b.env)
        row(f"restore -x / tar -x ({kind} image)", t, "restore", "tar -x", GOAL_READ, "wall")
        row("  the same in CPU time", t, "restore", "tar -x", None, "cpu")
        t = in_turns(runs, {
            "verify": steps([PY, "-m", "aixsmit", "cmd", "verify", "-f", img]),
            "tar -t": steps(["tar", "--list", *comp, "-f", img]),
        }, None, b.env)
        row(f"verify / tar -t ({kind} image)", t, "verify", "tar -t", GOAL_READ, "wall")
        row("  the same in CPU time", t, "verify", "tar -t", None, "cpu")
        if kind == "unpacked":
            # tar -t seeks over the data of an unpacked image; verify hashes every byte of it.
            # For scale (no goal): tar reading every byte, writing the files' data to /dev/null.
            t = in_turns(runs, {
                "verify": steps([PY, "-m", "aixsmit", "cmd", "verify", "-f", img]),
                "tar -xO": steps(["tar", "--extract", "--to-stdout", "-f", img]),
            }, None, b.env)
            row("  verify / tar -xO >/dev/null (every byte read)", t, "verify", "tar -xO", None, "wall")
            row("  the same in CPU time", t, "verify", "tar -xO", None, "cpu")
    for d in (t1, t2):
        shutil.rmtree(d, ignore_errors=True)


def _level_rows(b: Bench, runs: int) -> None:
    """Level 0 of a copy of the small tree, 1% of its files changed, then level 1 in turns."""
    src = b.tree("small")
    fs = b._mount_image(os.path.join(b.base, "level.img"), "1G", 200_000, "level", fresh=True)
    subprocess.run(["cp", "-a", os.path.join(src, "home"), fs], check=True)
    out = b.out
    snar0, snar = os.path.join(out, "ref0.snar"), os.path.join(out, "ref.snar")
    level_flags = ["--format=posix", "--xattrs", "--xattrs-include=*", "--sparse", "--one-file-system", "--no-check-device"]
    run([PY, "-m", "aixsmit", "cmd", "backup", "-0", "-u", "-f", os.path.join(out, "l0.tar"), fs], env=b.env)
    run(["tar", "--create", *level_flags, f"--listed-incremental={snar0}", "-f", os.path.join(out, "ref0.tar"),
         "-C", fs, "."])
    files = [os.path.join(dp, f) for dp, _, fns in os.walk(fs) for f in fns]
    time.sleep(1.1)  # a changed file's mtime differs from the level 0's
    for path in random.Random(20).sample(files, len(files) // 100):
        with open(path, "ab") as f:
            f.write(b"changed\n")
    l1, ref1 = os.path.join(out, "l1.tar"), os.path.join(out, "ref1.tar")

    def fresh_snar() -> None:
        shutil.copyfile(snar0, snar)
        if os.path.exists(ref1):
            os.unlink(ref1)

    section("level", f"level 1 after 1% of {len(files)} files changed, all CPUs free")
    t = in_turns(runs, {
        "level 1": steps([PY, "-m", "aixsmit", "cmd", "backup", "-1", "-f", l1, fs], before=b.gone(l1)),
        "tar -g": steps(["tar", "--create", *level_flags, f"--listed-incremental={snar}", "-f", ref1, "-C", fs, "."],
                        ["sync", ref1], before=fresh_snar),
    }, None, b.env)
    row("backup -1 / tar --listed-incremental", t, "level 1", "tar -g", GOAL_LEVEL, "wall")
    row("  the same in CPU time (level 1)", t, "level 1", "tar -g", GOAL_LEVEL, "cpu")


def _rss_row(b: Bench) -> None:
    root = b.tree("million")
    img = os.path.join(b.out, "million.mksysb")
    section("million", "mksysb on 1,000,000 files: peak memory")
    u = run([PY, "-m", "aixsmit", "cmd", "mksysb", "-i", "--root", root, img], env=b.env)
    line("mksysb peak RSS (largest process of the tree)", f"{u.rss / 1e6:7.1f} MB in {u.wall:.0f} s wall, "
         f"{u.cpu:.0f} s CPU", "< 200 MB", u.rss < RSS_GOAL)
    os.unlink(img)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=os.environ.get("BENCH_ROWS", "small,restore,level"))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "0")) or None)
    args = ap.parse_args()
    rows = {"small", "big", "usr", "restore", "level", "rss"} if args.rows == "all" else set(args.rows.split(","))
    if os.geteuid() != 0 or not shutil.which("zstd"):
        print("needs root (loop devices) and zstd; skipped")
        return 0
    b = Bench()
    start = time.monotonic()
    try:
        print(f"backups: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
              "medians of per-turn ratios, (lowest-highest)", flush=True)
        for name in ("small", "big", "usr"):
            if name not in rows and not (name == "small" and "restore" in rows):
                continue
            root = b.tree(name)
            runs = args.runs or {"small": 5, "big": 3, "usr": 2}[name]
            conds = ["free"] if name == "usr" else list(CONDITIONS)
            if name not in rows:  # restore only: the images, made once
                conds, runs_m = ["free"], 1
            else:
                runs_m = runs
            images = _mksysb_rows(b, name, root, runs_m, conds)
            if "restore" in rows:
                _read_rows(b, name, images, args.runs or 3)
            for img in images.values():
                os.unlink(img)
        if "level" in rows:
            _level_rows(b, args.runs or 5)
        if "rss" in rows:
            _rss_row(b)
        summary()
        print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.1f} at the end)")
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
