"""What every command shares: --root, output helpers."""

from __future__ import annotations

import argparse
import sys

from ..fs.mounts import visible


def _root_dir(value: str) -> str:
    if not value or "\0" in value:
        raise argparse.ArgumentTypeError("an empty path: give the directory that plays /, such as /mnt/sys")
    return value


def add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", metavar="DIR", default="/", type=_root_dir,
                   help="treat DIR as / (a system mounted elsewhere, or a test tree): only mounts below it, shown relative to it")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of the AIX-style text")


def print_json(value: object) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def shown(path: str) -> str:
    """A path safe for one column of a table: :func:`aixsmit.fs.mounts.visible` with spaces
    escaped too, as mountinfo writes them."""
    return visible(path, spaces=True)
