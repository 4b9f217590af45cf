"""Entry point: ``aixsmit [FASTPATH]`` opens the menus; ``aixsmit cmd NAME …`` runs a command."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from . import __version__
from .errors import AixsmitError

EXIT_CODES = """exit status:
  0  success (sysonly: only system file systems are mounted)
  1  failure, with a one-line reason on stderr (sysonly: user file systems are mounted)
  2  the command line is wrong
  130 interrupted (Ctrl-C)
"""


class CmdParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with the code the command documents
    (AIX: mksysb 1, savevg 2)."""

    def __init__(self, *a, usage_code: int = 2, **kw):
        super().__init__(*a, **kw)
        self.usage_code = usage_code
        self._intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        """A command's own options and positionals in any order, as SMIT writes them (flags
        first, positionals last): plain argparse gives a positional list that follows another
        positional (``schedule add user --daily 01:00 /home``) nothing and rejects the rest."""
        if self._intermixing or any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            return super().parse_known_args(args, namespace)
        args = list(sys.argv[1:] if args is None else args)
        # After "--" everything is a positional, even "-x": stand-ins that cannot look like an
        # option carry those through the intermixed reading (which does not know "--").
        marks: dict[str, str] = {}
        if "--" in args:
            at = args.index("--")
            marks = {f"\0{n}": a for n, a in enumerate(args[at + 1:])}
            args = args[:at] + list(marks)
        self._intermixing = True
        try:
            with warnings.catch_warnings():
                # argparse warns when a positional's dest already has a default (set_defaults);
                # it then reads the positional all the same: nothing for an operator to see.
                warnings.filterwarnings("ignore", message="Do not expect ", category=UserWarning)
                ns, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if marks:
            for key, value in vars(ns).items():
                if isinstance(value, list):
                    setattr(ns, key, [marks.get(v, v) if isinstance(v, str) else v for v in value])
                elif isinstance(value, str) and value in marks:
                    setattr(ns, key, marks[value])
            extras = [marks.get(e, e) for e in extras]
        if extras:
            # Said by the command itself, with its usage and its usage exit code (mksysb 1),
            # not passed up to 'aixsmit cmd' to be reported with the list of commands.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    def error(self, message):
        self.print_usage(sys.stderr)
        from .fs.mounts import visible

        # argparse quotes the operator's own words back (an unknown option, a bad value): a name
        # holding ESC must not reach the terminal raw.
        self.exit(self.usage_code, f"{self.prog}: error: {visible(message, backslash=False)}\n")


class _Unused:
    """What a command's register function gets for a parser this run does not need: every call,
    attribute and assignment is taken and does nothing (so nothing is built for it)."""

    def __getattr__(self, name: str) -> "_Unused":
        return self

    def __call__(self, *args, **kwargs) -> "_Unused":
        return self

    def __iter__(self):
        return iter(())


class _OneCommand:
    """The subparsers action as the register functions see it when only the parser of
    ``name`` is built: its add_parser builds that one and hands out _Unused for the others."""

    def __init__(self, sub, name: str):
        self._sub, self._name = sub, name

    def add_parser(self, name: str, **kwargs):
        return self._sub.add_parser(name, **kwargs) if name == self._name else _Unused()

    def __getattr__(self, name: str):
        return getattr(self._sub, name)


# Who registers each command (module of aixsmit.commands, function): running a command imports
# only its own module, so lsmount or a level backup does not pay at start-up for what mksysb
# imports. A name not listed registers every command (a new one works before it is listed;
# tests/test_cli.py checks this list against what the modules register).
_REGISTERS = (("fs", "register"), ("backup", "register"), ("backup", "register_clone"), ("backup", "register_jobs"),
              ("schedule", "register_backup"), ("schedule", "register"))
_COMMANDS = {
    **dict.fromkeys(("lsfs", "lsmount", "sysonly", "holders", "umount", "mount"), ("fs", "register")),
    **dict.fromkeys(("lsvg", "mksysb", "savevg", "lsmksysb", "lsbackvg", "restore", "restvg", "sysbackup", "verify"),
                    ("backup", "register")),
    **dict.fromkeys(("crfs", "clone"), ("backup", "register_clone")),
    "jobs": ("backup", "register_jobs"),
    "backup": ("schedule", "register_backup"),
    "schedule": ("schedule", "register"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``aixsmit cmd``: with every command, or, when ``command`` is one of
    ``_COMMANDS``, with that command's parser alone: only its module is imported, and the other
    parsers that module registers are not built (each costs a command's start-up argparse's help
    formatter and translation look-ups for its options)."""
    from importlib import import_module

    p = CmdParser(
        prog="aixsmit cmd",
        description="aixsmit commands: the same functions the menus use.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"aixsmit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="NAME", parser_class=CmdParser)
    sub.required = True
    known = command in _COMMANDS
    registry = _OneCommand(sub, command) if known else sub
    for module, register in [_COMMANDS[command]] if known else _REGISTERS:
        getattr(import_module(f".commands.{module}", __package__), register)(registry)
    for name, parser in sub.choices.items():
        parser.epilog = parser.epilog or EXIT_CODES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def run_cmd(argv: list[str]) -> int:
    # The command named first (not an option such as --help): only its parser is built.
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AixsmitError as exc:
        sys.stdout.flush()
        from .fs.mounts import visible

        # One line each, whatever a name in it holds (ESC, newline, C1): never raw on the terminal.
        print(visible(str(exc), backslash=False), file=sys.stderr)
        for line in exc.details:
            print(visible(line, backslash=False), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("aixsmit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the operator gets one line; AIXSMIT_DEBUG=1 shows the traceback
        if os.environ.get("AIXSMIT_DEBUG"):
            raise
        print(f"aixsmit: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _terminal_defaults() -> None:
    """Settings Textual reads when it is imported: the cheapest screen that still looks right."""
    env = os.environ
    # TERM=dumb has no colour system, and Textual then writes truecolor escapes: use 16 colours.
    if env.get("TERM", "dumb") in ("dumb", "") and not env.get("TEXTUAL_COLOR_SYSTEM"):
        env["TEXTUAL_COLOR_SYSTEM"] = "standard"
    # Textual's own 60 frames a second: a change is drawn within 17-33 ms (a key, the end of a
    # command). Streaming output is drawn at COMMAND STATUS's own 20 ticks a second whatever
    # the cap; a cap of 20 saved a slow link about 10% of the bytes of a flood (measured in
    # tmux) but could hold a command's end off the screen for up to 100 ms.
    env.setdefault("TEXTUAL_FPS", "60")
    env.setdefault("TEXTUAL_ANIMATIONS", "none")
    env.setdefault("TEXTUAL_SMOOTH_SCROLL", "0")


_exit_at_once = False


def exit_at_once() -> None:
    """Called by a command whose files are all closed and written: when it ends, the process
    exits without the interpreter's clean-up of modules and objects (about 10 ms that an
    operator timing mksysb would otherwise pay, measured on an empty image)."""
    global _exit_at_once
    _exit_at_once = True


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cmd"]:
        rc = run_cmd(argv[1:])
        if as_program and _exit_at_once:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (BrokenPipeError, OSError):
                pass
            os._exit(rc)
        return rc
    if argv[:1] in (["--version"],):
        print(f"aixsmit {__version__}")
        return 0
    _terminal_defaults()
    try:
        from .tui.app import run_tui
    except ImportError:
        print("aixsmit: the menus are not built yet; use 'aixsmit cmd --help'", file=sys.stderr)
        return 1
    return run_tui(argv)


if __name__ == "__main__":
    sys.exit(main())
