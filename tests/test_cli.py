"""aixsmit cmd's parser: a command's own usage errors are its own (usage, exit code)."""

from __future__ import annotations

import pytest

from conftest import aixsmit


@pytest.mark.parametrize("name,args,code", [("mksysb", ["--bogus", "/x"], 1), ("savevg", ["-f", "/x", "--bogus", "vg"], 2),
                                            ("lsmount", ["extra"], 2)])
def test_unknown_argument_is_the_commands_own_usage_error(name, args, code):
    """AIX's mksysb exits 1 on a wrong command line, savevg 2: an unknown option was reported by
    'aixsmit cmd' with the list of commands, and exit 2 for both."""
    r = aixsmit("cmd", name, *args)
    assert r.returncode == code
    assert r.stderr.startswith(f"usage: aixsmit cmd {name} ")
    assert r.stderr.splitlines()[-1] == f"aixsmit cmd {name}: error: unrecognized arguments: {args[-2] if name == 'savevg' else args[0]}"


@pytest.mark.parametrize("argv,dest,want", [
    (["restore", "-T", "-f", "x", "--", "-weird", "./a"], "files", ["-weird", "./a"]),
    (["schedule", "add", "user", "--daily", "05:00", "--dest", "/d", "--", "-odd", "/data"], "filesystems", ["-odd", "/data"]),
    (["holders", "--", "-x"], "mount", "-x"),
])
def test_after_double_dash_everything_is_a_positional(argv, dest, want):
    """Options and positionals in any order (SMIT writes positionals last, also after the
    command's own), and after "--" a name such as -x is a name."""
    from aixsmit.cli import build_parser

    assert getattr(build_parser().parse_args(argv), dest) == want


def test_reading_a_command_line_prints_no_warning():
    """A parser with a default for a positional (schedule add's FS) made argparse print a
    UserWarning before the command's own output."""
    import warnings

    from aixsmit.cli import build_parser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns = build_parser().parse_args(["schedule", "add", "user", "--daily", "05:00", "--dest", "/d", "/home"])
    assert ns.filesystems == ["/home"]
    assert [str(w.message) for w in caught] == []


def test_each_command_parses_alone_as_among_all():
    """Running a command registers only its own module's commands (start-up): each name in the
    list of who registers what reads its own --help as the full parser does, and every command
    the modules register is in the list."""
    import argparse

    from aixsmit import cli

    def commands(parser):
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return sub.choices

    every = commands(cli.build_parser())
    assert sorted(cli._COMMANDS) == sorted(every)
    for name in every:
        alone = commands(cli.build_parser(name))
        assert name in alone and set(alone) <= set(every)
        assert alone[name].format_help() == every[name].format_help()
