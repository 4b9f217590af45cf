"""What every command shares: --root, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import gc
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


def emit(line: str, stream: str) -> None:
    """A line of a command's output on ``stream`` ("stdout" or "stderr"), written at once."""
    f = sys.stdout if stream == "stdout" else sys.stderr
    f.write(line + "\n")
    f.flush()


def print_json(value: object, plain: bool = False) -> None:
    """``value`` as JSON on stdout, indented by two, non-ASCII as it is.

    ``plain=True`` says the value holds only str, int, bool, None, lists and dicts with str keys
    (a listing of 100,000 mounts): then orjson writes it, byte for byte what json writes and
    about 50 times as fast; a string json would write and orjson refuses (an undecodable
    byte kept as a lone surrogate) falls back to json."""
    if plain:
        import orjson

        try:
            data = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        except (TypeError, OverflowError):
            pass
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            return
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def gc_paused():
    """Python's cycle collector held off for a block that makes many objects and no cycles
    (the 100,000 values of a mount table): it would otherwise go through all of them again
    and again as they are made, a quarter of lsmount's time on such a table."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def shown(path: str) -> str:
    """A path safe for one column of a table: :func:`aixsmit.fs.mounts.visible` with spaces
    escaped too, as mountinfo writes them."""
    return visible(path, spaces=True)
