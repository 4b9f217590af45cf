"""``make screenshots``: SVG and PNG of the main screens, from the real app at 80x24.

COMMAND STATUS is captured in the middle of a real mksysb of a generated tree on a tmpfs (root
is needed for the mount; without it that screenshot is skipped with a note): many small files
and a few large ones, so the bar shows bytes and files apart. lsmount is captured on the same
tree with a user file system mounted, its data classes on screen at 80x24.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..smit.log import SmitLog
from ..smit.model import load_tree
from ..smit.services import SERVICES
from .app import AixsmitApp
from .screens import CommandStatusScreen

SIZE = (80, 24)


def _app(work: Path, fastpath: str, root: str = "/") -> AixsmitApp:
    log = SmitLog.open(str(work / "smit.log"), str(work / "smit.script"))
    return AixsmitApp(load_tree(services=set(SERVICES)), fastpath, root, host_name="linux", smit_log=log)


def _png(svg_path: Path) -> None:
    try:
        import cairosvg
    except ImportError:
        print(f"  (no cairosvg: {svg_path.name} only as SVG)")
        return
    svg = svg_path.read_text().replace("Fira Code", "DejaVu Sans Mono")
    cairosvg.svg2png(bytestring=svg.encode(), write_to=str(svg_path.with_suffix(".png")), output_width=1200)


async def _shot(app: AixsmitApp, out: Path, name: str, keys=(), typed: str = "", until=None) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for ch in typed:
            await pilot.press(ch)
        for k in keys:
            await pilot.press(k)
            await pilot.pause()
        if until is not None:
            end = time.monotonic() + 120
            while not until(app) and time.monotonic() < end:
                await pilot.pause(0.02)
        await pilot.pause(0.1)
        svg = out / f"{name}.svg"
        svg.write_text(app.export_screenshot(title=f"aixsmit - {name}"))
        _png(svg)
        print(f"  {svg}")


def _mid_backup(app: AixsmitApp) -> bool:
    s = app.screen
    if not isinstance(s, CommandStatusScreen):
        return False
    p = s._progress
    return p is not None and p.bytes_total and 0.3 < p.fraction < 0.8 or not s.running


def _ended(app: AixsmitApp) -> bool:
    return isinstance(app.screen, CommandStatusScreen) and not app.screen.running


async def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="aixsmit-shots-"))
    os.environ["AIXSMIT_STATE_DIR"] = str(work / "state")
    os.environ["AIXSMIT_CONFIG"] = str(work / "aixsmit.yaml")
    (work / "aixsmit.yaml").write_text("")
    try:
        await _shot(_app(work, "top_menu"), out, "top-menu")
        await _shot(_app(work, "backsys"), out, "backsys-menu")
        await _shot(_app(work, "mksysb"), out, "mksysb-dialog", typed="/backup/sys.mksysb", keys=("down", "down", "tab"))
        await _shot(_app(work, "mksysb"), out, "f4-list", keys=("down", "down", "f4"))
        await _shot(_app(work, "mksysb"), out, "f6-command", typed="/backup/sys.mksysb", keys=("down", "down", "tab", "f6"))
        await _shot(_app(work, "clone"), out, "clone-dialog", typed="/backup/sys.mksysb",
                    keys=("down", *"/dev/sdb", "down", "down", "down", *"newhost"))
        if os.geteuid() != 0:
            await _shot(_app(work, "walkthrough"), out, "walkthrough-step1")
            print("  (not root: COMMAND STATUS during a backup needs a tmpfs mount; skipped)")
            return 0
        root, dest = work / "root", work / "out"
        root.mkdir()
        dest.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "aixsmit-shots", str(root)], check=True)
        try:
            # Enough files for a backup of a few seconds (progress comes once a second);
            # most are empty, so the tmpfs holds them.
            for d in range(1000):
                p = root / "srv" / f"app{d // 100}" / f"module{d}"
                p.mkdir(parents=True)
                for f in range(100):
                    (p / f"file{f}.txt").write_text("x" * (f * 7) if f % 4 == 0 else "")
            for n in range(4):  # large files: most of the bytes, few of the names
                with open(root / "srv" / f"archive{n}.dat", "wb") as f:
                    for _ in range(150):
                        f.write(os.urandom(1 << 20))
            home = root / "home"
            home.mkdir()
            disk = work / "home.img"  # a user file system: ext4 on a loop device
            with open(disk, "wb") as f:
                f.truncate(16 << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
            subprocess.run(["mount", "-o", "loop", str(disk), str(home)], check=True)
            try:
                await _shot(_app(work, "lsmount", str(root)), out, "lsmount", until=_ended)
                await _shot(_app(work, "walkthrough", str(root)), out, "walkthrough-step1")
            finally:
                subprocess.run(["umount", str(home)])
            app = _app(work, "mksysb", str(root))
            await _shot(app, out, "command-status", typed=str(dest / "sys.mksysb"), keys=("enter",), until=_mid_backup)
        finally:
            subprocess.run(["umount", "-l", str(root)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))))
