"""Manual pages generated from the command-line parsers: ``aixsmit(8)`` for the menus and one
``aixsmit-NAME(8)`` per ``aixsmit cmd NAME``.

The pages are written by argparse-manpage from the very parsers that print ``--help``, so
the two say the same (a test checks it). They are kept in ``aixsmit/man/`` (shipped with the
package, installed under ``share/man/man8``); ``make man`` (``python -m aixsmit.manpages``)
writes them again after a parser changed. Generating needs argparse-manpage (a development
dependency) and imports the menus' parser (Textual); running aixsmit needs neither.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import __version__

MAN_DIR = Path(__file__).parent / "man"
SECTION = 8
# A fixed date: the pages change only when what they say changes (argparse-manpage would
# otherwise stamp today's date, and every run would rewrite every page).
DATE = "2026-12-01"
MANUAL = "aixsmit"

FILES = """.TP
\\fB$HOME/smit.log\\fR, \\fB$HOME/smit.script\\fR
The menus' log (screens, commands, their output) and script (every command run, ready to run again), mode 0600; \\-l and \\-s name others.
.TP
\\fB/etc/aixsmit/aixsmit.yaml\\fR
The configuration: system_filesystems, volume_groups, backup_streams (AIXSMIT_CONFIG names another file).
.TP
\\fB/var/lib/aixsmit\\fR
The state directory: the ledger of unmounted file systems, schedules, jobs, dumpdates (AIXSMIT_STATE_DIR names another).
.TP
\\fB/etc/cron.d/aixsmit\\fR
The schedules, on Linux (AIXSMIT_CRON_DIR names another folder); on AIX a marked block of root's crontab."""

ENVIRONMENT = """.TP
\\fBAIXSMIT_CONFIG\\fR, \\fBAIXSMIT_STATE_DIR\\fR, \\fBAIXSMIT_CRON_DIR\\fR
Another configuration file, state directory, or cron folder.
.TP
\\fBSMIT_SHELL\\fR
n: F9 opens no shell.
.TP
\\fBAIXSMIT_ESC_KEYS\\fR
1: Esc then 1..0 for F1..F10, as \\-\\-esc\\-keys.
.TP
\\fBNO_COLOR\\fR, \\fBESCDELAY\\fR, \\fBTERM\\fR
No colours; how long Esc waits for the rest of a key; the terminal's kind."""


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _esc(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


_HEAD = re.compile(r"^([a-z][a-z ]*[a-z])( \(.*\))?:\s*(.*)$")
_ENTRY = re.compile(r"^\s+(\d+)\s+(\S.*)$")


def epilog_sections(epilog: str) -> list[tuple[str, list[str]]]:
    """An epilog such as ``exit status:\\n  0  success\\n  1  failure`` as man sections:
    (HEADING, roff lines). Each ``  N  text`` line becomes a tagged paragraph; a heading's
    words in parentheses become the section's first line; an unheaded paragraph is kept as
    it is, under NOTES."""
    sections: list[tuple[str, list[str]]] = []
    for raw in epilog.strip("\n").split("\n"):
        head = _HEAD.match(raw)
        if head:
            sections.append((head.group(1).upper(), []))
            intro = ((head.group(2) or "").strip() + " " + head.group(3)).strip()
            if intro:
                sections[-1][1].append(_esc(intro))
            continue
        if not sections:
            sections.append(("NOTES", []))
        lines = sections[-1][1]
        # Two entries on one line ("1  mksysb: ...        2  savevg: ..."): one each.
        for part in re.split(r"\s{3,}(?=\d+\s)", raw.rstrip()):
            entry = _ENTRY.match(" " + part.lstrip()) if raw.startswith(" ") else None
            if entry:
                lines += [".TP", entry.group(1), _esc(entry.group(2))]
            elif part.strip():
                lines.append(_esc(part.strip()))
    return sections


def render(parser: argparse.ArgumentParser, name: str, summary: str, extra: list[tuple[str, str]] = ()) -> str:
    """One page: ``name`` (aixsmit, aixsmit-mksysb) from ``parser``, its epilog as sections."""
    from argparse_manpage.manpage import Manpage

    epilog, parser.epilog = parser.epilog, None
    try:
        page = Manpage(parser, {"manual_section": SECTION, "manual_title": MANUAL, "project_name": "aixsmit",
                                "version": __version__, "date": DATE, "description": summary})
        page.prog = name
        text = str(page)
        # No hyphenation, ragged right: command names and options stay whole words.
        text = re.sub(r"^(\.TH .*)$", r"\1\n.nh\n.ad l", text, count=1, flags=re.M)
    finally:
        parser.epilog = epilog
    out = [text.rstrip("\n")]
    for heading, lines in epilog_sections(epilog or ""):
        out += ["", f".SH {heading}", *lines]
    for heading, body in extra:
        out += ["", f".SH {heading}", body]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    """{file name: page} for aixsmit.8 and every aixsmit-NAME.8."""
    from .cli import build_parser
    from .tui.app import build_parser as menus_parser

    cmd = build_parser()
    sub = _subparsers(cmd)
    helps = {a.dest: a.help for a in sub._choices_actions}
    names = list(sub.choices)
    commands = "\n".join(f".TP\n\\fBaixsmit cmd {n}\\fR\n{_esc(helps.get(n) or '')}" for n in names)
    see_also = ", ".join(f"\\fBaixsmit\\-{n}\\fR(8)" for n in names)
    out = {f"aixsmit.{SECTION}": render(
        menus_parser(), "aixsmit", "SMIT-style menus and commands for the AIX system backup strategy",
        [("COMMANDS", ".B aixsmit cmd\n" + _esc("NAME [options]: the same functions the menus run, one line on "
                                               "stderr for an error.") + "\n" + commands),
         ("FILES", FILES), ("ENVIRONMENT", ENVIRONMENT), ("SEE ALSO", see_also)])}
    for n in names:
        out[f"aixsmit-{n}.{SECTION}"] = render(sub.choices[n], f"aixsmit-{n}", helps.get(n) or n,
                                               [("SEE ALSO", "\\fBaixsmit\\fR(8)")])
    return out


def write(directory: Path = MAN_DIR) -> list[Path]:
    """Write every page into ``directory``, removing pages of commands that are gone."""
    directory.mkdir(parents=True, exist_ok=True)
    want = pages()
    for old in directory.glob(f"*.{SECTION}"):
        if old.name not in want:
            old.unlink()
    written = []
    for fname, text in want.items():
        path = directory / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else MAN_DIR
    for p in write(target):
        print(f"wrote {p}", flush=True)
