"""The manual pages: one per command and aixsmit(8), generated from the parsers, shipped as
they are generated, and saying what ``--help`` says (read through man(1), as an operator
reads them)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess

import pytest

from aixsmit import cli, manpages

MAN = shutil.which("man")
pytestmark = pytest.mark.skipif(MAN is None, reason="man (man-db) is not installed: scripts/install-deps")


def command_names() -> list[str]:
    return list(manpages._subparsers(cli.build_parser()).choices)


def rendered(path) -> str:
    """The page as man(1) shows it, on a line wide enough that nothing wraps."""
    env = dict(os.environ, MANWIDTH="2000", MANPAGER="cat", PAGER="cat", LANG="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    out = subprocess.run([MAN, "-l", str(path)], env=env, capture_output=True, text=True, check=True).stdout
    return re.sub(r".\x08", "", out)  # overstrike (bold, underline)


def words(text: str) -> list[str]:
    text = text.replace("\u2010", "-").replace("\u2212", "-").replace("\u2011", "-")
    return [w.casefold().rstrip(":,") for w in text.split()]


def help_chunks(text: str) -> list[str]:
    """What --help says, as pieces that must each appear whole in the page: the usage, each
    paragraph of the description, each argument with its help, each line of the epilog."""
    chunks, cur = [], []
    for line in text.split("\n"):
        if not line.strip() or re.match(r"^(options|positional arguments):$", line):
            chunks.append(" ".join(cur)); cur = []
            continue
        if re.match(r"^ {2,6}\S", line) and not re.match(r"^ {2}\d+ ", line) and cur and not cur[0].startswith("usage:"):
            chunks.append(" ".join(cur)); cur = []  # a new argument
        elif re.match(r"^ {0,3}\d+\s", line) or re.match(r"^[a-z][a-z ]*( \(.*\))?:", line):
            chunks.append(" ".join(cur)); cur = []  # an epilog entry or heading
        cur.append(line.strip())
    chunks.append(" ".join(cur))
    out = []
    for c in chunks:
        c = re.sub(r"^usage: ", "", c)
        if not c or c.startswith("-h, --help"):
            continue
        # Two exit codes on one line of --help are two entries in the page.
        out += [p for p in re.split(r"\s{3,}(?=\d+\s)", c) if p.strip()]
    return out


def contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(hay[i:i + n] == needle for i in range(len(hay) - n + 1))


def test_shipped_pages_are_generated_from_the_parsers_as_they_are():
    """aixsmit/man holds exactly what the parsers generate now: `make man` after changing one."""
    want = manpages.pages()
    have = {p.name: p.read_text() for p in manpages.MAN_DIR.glob("*.8")}
    assert sorted(have) == sorted(want), "the commands changed: run 'make man'"
    stale = [n for n in want if have[n] != want[n]]
    assert stale == [], f"out of date (run 'make man'): {stale}"
    assert set(want) == {"aixsmit.8"} | {f"aixsmit-{n}.8" for n in command_names()}


@pytest.mark.parametrize("name", command_names())
def test_help_and_man_page_say_the_same(name):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main(["cmd", name, "--help"])
    assert done.value.code == 0
    page = words(rendered(manpages.MAN_DIR / f"aixsmit-{name}.8"))
    missing = [c for c in help_chunks(out.getvalue()) if not contains(page, words(c))]
    assert missing == [], f"aixsmit cmd {name} --help says what man aixsmit-{name} does not"
    assert contains(page, words(f"aixsmit-{name} -")), "NAME line"


def test_aixsmit_page_covers_the_menus_and_lists_every_command():
    from aixsmit.tui.app import build_parser

    page = words(rendered(manpages.MAN_DIR / "aixsmit.8"))
    missing = [c for c in help_chunks(build_parser().format_help()) if not contains(page, words(c))]
    assert missing == []
    for name in command_names():
        assert contains(page, words(f"aixsmit cmd {name}")), name
        assert contains(page, words(f"aixsmit-{name}(8)")), name


def test_epilog_exit_codes_become_tagged_entries():
    sections = manpages.epilog_sections("exit status (as AIX documents):\n  0  success\n"
                                        "  1  a: wrong        2  b: wrong\n  130 interrupted\n")
    assert sections == [("EXIT STATUS", ["(as AIX documents)", ".TP", "0", "success", ".TP", "1", "a: wrong",
                                         ".TP", "2", "b: wrong", ".TP", "130", "interrupted"])]
