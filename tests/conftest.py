"""Shared fixtures: a temporary root with real mounts, cleaned up even when a test fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: mounts tmpfs and loop devices")


def need_tool(name: str):
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed (scripts/install-deps)")


def run(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True, **kw)


def aixsmit(*args, env=None, check=False, input=None) -> subprocess.CompletedProcess:
    """Run the real command line, as an operator would."""
    return subprocess.run([sys.executable, "-m", "aixsmit", *map(str, args)], capture_output=True, text=True,
                          env=env, check=check, input=input, errors="surrogateescape")


def image_tar(path):
    """The image at ``path`` as a tarfile.TarFile read from memory: unpacked first by the zstd
    command itself when it is packed (the oracle, not aixsmit's own reader)."""
    import io
    import tarfile

    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data))


def is_packed(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x28\xb5\x2f\xfd"


def _mounts_under(path: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in os.fsdecode(f.read()).splitlines():
            mp = line.split(" ")[4]
            from aixsmit.fs.mounts import unescape

            mp = unescape(mp)
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def findmnt_table(root) -> list[dict]:
    """``findmnt --json -o TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT`` for the mounts at or below
    ``root``: util-linux's view, to compare before and after. A loop device is named by its
    backing file: it is the same file system when the kernel hands out another number (on a
    busy machine another process may take a loop number the moment it is free)."""
    import json

    # (Another mount on the host may carry a name that is not UTF-8: kept as surrogates.)
    out = json.loads(run("findmnt", "--json", "--list", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT",
                         errors="surrogateescape").stdout)
    root = str(root)
    rows = []
    for r in out["filesystems"]:
        if r["target"] == root or r["target"].startswith(root + "/"):
            src = r["source"] or ""
            dev, bracket, rest = src.partition("[")
            if dev.startswith("/dev/loop"):
                back = run("losetup", "-n", "-O", "BACK-FILE", dev, check=False).stdout.strip()
                src = f"loop:{back}" + bracket + rest
            rows.append(dict(r, source=src))
    return rows


class TempRoot:
    """A tmpfs mounted at ``path`` that plays ``/``, with user file systems on loop devices."""

    def __init__(self, base: Path):
        self.base = base
        self.path = base / "root"
        self.images = base / "images"
        self.path.mkdir()
        self.images.mkdir()
        self.loops: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.config = base / "aixsmit.yaml"
        self.config.write_text("# test configuration\n")
        run("mount", "-t", "tmpfs", "-o", "size=512m", "aixsmit-test-root", self.path)
        for d in ("usr", "var", "tmp", "home", "etc"):
            (self.path / d).mkdir()

    def p(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def image(self, name: str, size_mb: int = 24, fstype: str = "ext4") -> Path:
        img = self.images / f"{name}.img"
        with open(img, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        if fstype == "ext4":
            run("mkfs.ext4", "-q", "-F", "-L", name[:16], img)
        elif fstype == "xfs":
            run("mkfs.xfs", "-q", "-f", img)
        elif fstype == "btrfs":
            run("mkfs.btrfs", "-q", "-f", img)
        return img

    def loop_mount(self, mp: str, size_mb: int = 24, fstype: str = "ext4", autoclear: bool = False) -> str:
        """Make a file system on a new loop device and mount it at ``mp`` (relative to the root)."""
        img = self.image(mp.strip("/").replace("/", "_") or "rootfs", size_mb, fstype)
        target = self.p(mp)
        target.mkdir(parents=True, exist_ok=True)
        if autoclear:
            run("mount", "-o", "loop", "-t", fstype, img, target)
            dev = run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", target).stdout.strip()
        else:
            dev = run("losetup", "-f", "--show", img).stdout.strip()
            self.loops.append(dev)
            run("mount", "-t", fstype, dev, target)
        return dev

    def bulk(self, rel: str, mb: int) -> Path:
        """A file of ``mb`` MiB of random data (it does not compress, so backups take a while)."""
        path = self.p(rel)
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(1 << 20))
        return path

    def tmpfs(self, mp: str) -> None:
        target = self.p(mp)
        target.mkdir(parents=True, exist_ok=True)
        run("mount", "-t", "tmpfs", "tmpfs", target)

    def hold(self, cwd: Path, how: str = "cwd") -> subprocess.Popen:
        """Start a process that keeps ``cwd``'s file system busy (by cwd, or by an open file)."""
        if how == "cwd":
            proc = subprocess.Popen(["sleep", "600"], cwd=cwd, start_new_session=True)
        else:
            proc = subprocess.Popen(["sh", "-c", f"exec 3<'{cwd}/held'; exec sleep 600"], start_new_session=True)
        self.procs.append(proc)
        time.sleep(0.1)
        return proc

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env["AIXSMIT_STATE_DIR"] = str(self.base / "state")
        env["AIXSMIT_CONFIG"] = str(self.base / "aixsmit.yaml")
        env["AIXSMIT_HOST"] = "linux"
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def cleanup(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        root = str(self.path)
        # Loop devices whose files lie on our file systems (a test that put an image on /data and
        # failed before detaching it) hold those file systems busy: they go first.
        ours = set()
        for dev in self.loops:
            ours.add(subprocess.run(["losetup", "-n", "-O", "MAJ:MIN", dev], capture_output=True,
                                    text=True).stdout.strip())
        out = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-MAJ:MIN"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] in ours - {""}:
                subprocess.run(["losetup", "-d", parts[0]], capture_output=True)
        # Deepest first; everything below our own temporary root is ours.
        for _ in range(5):
            mps = sorted(set(_mounts_under(root)), key=lambda m: m.count("/"), reverse=True)
            if not mps:
                break
            for mp in mps:
                subprocess.run(["umount", mp], capture_output=True)
        for mp in _mounts_under(root):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for dev in self.loops:
            # Partitions added with partx outlive the detach on kernels without partition
            # scanning, and the next disk on this loop number would show them.
            subprocess.run(["partx", "-d", dev], capture_output=True)
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        # Loop devices attached by 'mount -o loop' whose files are ours.
        out = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(str(self.base)):
                subprocess.run(["losetup", "-d", parts[0]], capture_output=True)


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Every test keeps its state (ledger, jobs, schedules) in its own folder, never the host's."""
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AIXSMIT_CRON_DIR", str(tmp_path / "cron.d"))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def troot(tmp_path, monkeypatch):
    if not IS_ROOT:
        pytest.skip("needs root: mounts tmpfs and loop devices")
    tr = TempRoot(tmp_path)
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AIXSMIT_CONFIG", str(tmp_path / "aixsmit.yaml"))
    monkeypatch.setenv("AIXSMIT_HOST", "linux")
    try:
        yield tr
    finally:
        tr.cleanup()


@pytest.fixture
def aix_bin(tmp_path, monkeypatch):
    """Stand-in AIX executables (tests/fixtures/aix/bin) first on PATH, printing captured output."""
    monkeypatch.setenv("PATH", f"{FIXTURES / 'aix' / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("AIXSMIT_HOST", "aix")
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AIXSMIT_CONFIG", str(tmp_path / "aixsmit.yaml"))
    (tmp_path / "aixsmit.yaml").write_text("# test configuration\n")
    monkeypatch.setenv("AIX_FIXTURES", str(FIXTURES / "aix"))
    return FIXTURES / "aix"
