"""Every dialog of every shipped menu builds a command line that aixsmit's own command-line
parser accepts, and that means what the dialog's fields said: with its defaults (what Enter on
an untouched dialog runs), with typical values in every field, with each value of every ring,
with and without ``--root``.

The oracle is the real parser (``aixsmit.cli.build_parser``): each argument a field produced is
looked up in the parsed result (a flag's value under its option, a positional among the
positionals), so a value swallowed by the wrong option fails as surely as a rejected line."""

from __future__ import annotations

import argparse
import os
import contextlib
import io
import shlex

import pytest

from aixsmit.cli import build_parser
from aixsmit.smit import command
from aixsmit.smit.model import MenuError, load_tree
from aixsmit.smit.services import SERVICES

ROOT = "/mnt/other sys"  # a space: the value must travel as one argument

# What an operator types, or picks with F4, per list service (every service the menus use must
# be here: a new one makes this test ask for its typical value).
BY_SERVICE = {
    "mounted_user_fs": "/home",
    "mounted_fs": "/home",
    "unmounted_fs": "/data",
    "volume_groups": "datavg",
    "user_volume_groups": "datavg",
    "backup_images": "/backup/images/sys 1.mksysb",
    "backup_destinations": "/backup/images/sys 1.mksysb",
    "schedules": "u1",
    "free_devices": "/dev/loop7",
    "level_archives": "/backup/user/home/home.0.2026-11-29.tar",
    "free_disks": "/dev/sdb",
    "schedule_directories": "/backup/user",
    "scheduled_fs": "/home",
}
# Fields whose typical value is not the generic one of their type.
BY_NAME = {
    "when": "mon@03:30", "daily": "02:15", "keep": "3", "blocks": "128", "size": "1G",
    "hostname": "clone1", "target": "/tmp/restored", "mp": "/local", "fsexclude": "/etc/exclude.fs",
    "date": "2026-11-30", "id": "u1",
}
BY_MULTI = {
    "map": "/=/dev/sdb1 /usr=/dev/sdb2",
    "files": "./etc/hosts './etc/my file'",
    "mounts": "/home /data",
    "fs": "/home /data",
    "names": "./home/ann './home/bob/my file'",
}
GENERIC = {"path": "/backup/file", "numeric": "7", "hex": "1f", "text": "value"}


@pytest.fixture(scope="module")
def tree():
    return load_tree(services=set(SERVICES))


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def dialogs():
    return [s for s in load_tree(services=set(SERVICES)).screens.values() if s.kind == "dialog"]


def typical(screen, f) -> str:
    if f.is_ring:
        others = [c for c in f.choices if c != f.default]
        return others[0] if others else f.default
    if f.type == "multi":
        return BY_MULTI.get(f.name) or " ".join([BY_SERVICE.get(f.list, GENERIC["path"])] * 2)
    if f.name in BY_NAME:
        return BY_NAME[f.name]
    if f.list:
        assert f.list in BY_SERVICE, f"{screen.source}: line {f.line}: give list service '{f.list}' a typical value"
        return BY_SERVICE[f.list]
    return GENERIC[f.type]


def required_only(screen) -> dict[str, str]:
    return {f.name: typical(screen, f) for f in screen.fields if f.required}


def cases(screen):
    """(name, values): defaults, every field typical, and each choice of every ring."""
    yield "defaults", required_only(screen)
    yield "typical", {f.name: typical(screen, f) for f in screen.fields}
    for f in screen.fields:
        for choice in f.choices:
            yield f"{f.name}={choice}", {**required_only(screen), f.name: choice}


def dashed(screen):
    """Values that start with '-' in every field that takes free text: still values, never options."""
    out = required_only(screen)
    for f in screen.fields:
        if f.is_ring or f.type in ("numeric", "hex"):
            continue
        v = typical(screen, f)
        out[f.name] = " ".join(shlex.quote("-" + w) for w in shlex.split(v)) if f.type == "multi" else "-" + v
    return out


def leaf(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that reads the options after the command's words (``schedule add``)."""
    p = parser
    for w in words:
        sub = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not sub or w not in sub[0].choices:
            break
        p = sub[0].choices[w]
    return p


def parse(parser, argv: list[str]):
    assert argv[:2] == ["aixsmit", "cmd"], argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv[2:])
    except SystemExit:
        pytest.fail(f"{shlex.join(argv)}\n  rejected: {err.getvalue().strip().splitlines()[-1]}")


def _flat(v) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [str(v)]


def check_meaning(p: argparse.ArgumentParser, ns, f, args: list[str], argv: list[str]) -> None:
    """Each argument the field produced lands where the field meant it to."""
    where = f"field '{f.name}' -> {args} in: {shlex.join(argv)}"
    if f.positional:
        got = [x for a in p._actions if not a.option_strings for x in _flat(getattr(ns, a.dest, None))]
        for v in args:
            assert v in got, f"{where}: '{v}' is not among the positionals {got}"
        return
    i = 0
    while i < len(args):
        tok = args[i]
        joined = None
        if tok.startswith("--") and "=" in tok:
            tok, joined = tok.split("=", 1)
        elif not tok.startswith("--") and len(tok) > 2 and tok[:2] in p._option_string_actions:
            tok, joined = tok[:2], tok[2:]
        if joined is not None:
            args = args[:i] + [tok, joined] + args[i + 1:]
        action = p._option_string_actions.get(tok)
        assert action is not None, f"{where}: '{tok}' is not an option of '{p.prog}'"
        got = getattr(ns, action.dest)
        if action.nargs == 0:
            want = action.const if action.const is not None else True
            assert got == want, f"{where}: {tok} gave {action.dest}={got!r}"
            i += 1
        else:
            assert i + 1 < len(args), f"{where}: {tok} without its value"
            assert args[i + 1] in _flat(got), f"{where}: {tok} {args[i + 1]} gave {action.dest}={got!r}"
            i += 2


@pytest.mark.parametrize("screen", dialogs(), ids=lambda s: s.id)
@pytest.mark.parametrize("root", ["/", ROOT], ids=["no-root", "root"])
def test_every_dialog_builds_a_command_line_its_command_accepts(screen, root, parser):
    for host in ("linux", "aix"):
        base = screen.command.get(host)
        if not base or base[:2] != ["aixsmit", "cmd"]:
            continue  # AIX's own commands: see test_aix_commands_are_not_run_under_root
        for name, values in [*cases(screen), ("dashed", dashed(screen))]:
            argv = command.build(screen, values, host, root)
            ns = parse(parser, argv)
            p = leaf(parser, argv[2:])
            takes_root = "--root" in p._option_string_actions
            # A command that can work on another root must get it, or under --root the
            # dialog would act on this machine's own / instead.
            assert takes_root == screen.root, (
                f"{screen.source}: line {screen.line}: dialog '{screen.id}' has root: {screen.root} "
                f"but '{p.prog}' {'takes' if takes_root else 'does not take'} --root")
            if takes_root:
                assert ns.root == root, f"{name}: {shlex.join(argv)}: --root is {ns.root!r}"
            for f in screen.fields:
                v = values.get(f.name, f.default)
                if v != f.default or f.required or f.always:
                    check_meaning(p, ns, f, command.field_args(f, v.strip() if f.type != "path" else v), argv)


def test_selector_value_reaches_its_dialog(tree, parser):
    """A selector (List Contents of a Volume Group) hands its value to the dialog it opens."""
    for s in tree.screens.values():
        if s.kind != "selector":
            continue
        target = tree.get(s.next)
        f = s.fields[0]
        for root in ("/", ROOT):
            argv = command.build(target, {**required_only(target), f.name: typical(s, f)}, "linux", root)
            ns = parse(parser, argv)
            check_meaning(leaf(parser, argv[2:]), ns, next(x for x in target.fields if x.name == f.name),
                          command.field_args(f, typical(s, f)), argv)


def test_lsvg_contents_under_root(tree, parser):
    """The example: List Contents of a Volume Group under --root ran
    'aixsmit cmd lsvg -l --root R datavg' -> 'argument -l: expected one argument'."""
    argv = command.build(tree.get("lsvg1_run"), {"vg": "datavg"}, "linux", "/mnt/sys")
    ns = parse(parser, argv)
    assert (ns.l, ns.root) == ("datavg", "/mnt/sys")


def test_aix_commands_are_not_run_under_root(tree):
    """AIX's own commands know no --root: under one, a dialog that would run them on this
    machine's / says so instead of acting on the wrong system."""
    d = tree.get("mksysb")
    with pytest.raises(MenuError, match=r"Back Up This System to Tape/File: .*mksysb.* --root"):
        command.build(d, {"device": "/dev/rmt0"}, "aix", root="/mnt/sys")
    assert command.build(d, {"device": "/dev/rmt0"}, "aix") == ["mksysb", "-i", "/dev/rmt0"]
    # aixsmit's own commands take it on AIX too.
    assert command.build(tree.get("lsmount"), {}, "aix", root="/mnt/sys") == \
        ["aixsmit", "cmd", "lsmount", "--root", "/mnt/sys"]


# The options AIX documents for its own commands (aix-smit.md §2, §3.8, §4, §5).
AIX_OPTIONS = {
    "mksysb": "-a -A -b -e -F -G -i -m -M -N -p -P -T -v -V -x -X -Z",
    "savevg": "-a -A -b -e -f -i -m -p -r -T -v -V -x -X -Z",
    "lsvg": "-i -l -L -M -n -o -p",
    "lsfs": "-a -c -l -q -u -v",
    "restore": "-b -d -f -q -s -T -v -x",
    "restvg": "-b -d -f -l -n -P -q -r -s",
    "listvgbackup": "-a -b -B -c -d -D -f -l -L -n -r -s -V",
    "lsmksysb": "-a -b -B -c -d -D -f -l -L -n -r -s -V",
    "crfs": "-a -A -d -g -l -m -n -p -t -u -v",
    "backup": "-0 -1 -2 -3 -4 -5 -6 -7 -8 -9 -b -c -e -f -i -l -L -o -p -q -u -v -w -W",
}


@pytest.mark.parametrize("screen", [s for s in dialogs() if s.command.get("aix", ["aixsmit"])[0] != "aixsmit"],
                         ids=lambda s: s.id)
def test_aix_dialogs_use_only_options_aix_documents(screen):
    """On AIX a dialog runs AIX's own command: every option it writes is one AIX has (crfs
    --mount and restvg --map were Linux-only options given to AIX's crfs and restvg)."""
    argv0 = screen.command["aix"][0]
    assert argv0 in AIX_OPTIONS, f"{screen.id}: give AIX's options of {argv0}"
    known = set(AIX_OPTIONS[argv0].split())
    for name, values in cases(screen):
        argv = command.build(screen, values, "aix")
        unknown = [a for a in argv[1:] if a.startswith("-") and a not in known]
        assert unknown == [], f"{name}: {shlex.join(argv)}: AIX's {argv0} has no {unknown}"
        if screen.root:
            with pytest.raises(MenuError, match="cannot run under --root"):
                command.build(screen, values, "aix", ROOT)


def test_aix_add_a_file_system_mounts_it_when_asked(aix_bin, tree, tmp_path, monkeypatch):
    """AIX's crfs has no --mount: the dialog runs aixsmit's crfs, which runs crfs, then mount."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crfs").write_text('#!/bin/sh\nprintf \'%s %s\\n\' crfs "$*" >> "$AIX_ARGV_LOG"\n')
    (bin_dir / "crfs").chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("AIX_ARGV_LOG", str(log))
    argv = command.build(tree.get("crfs"), {"vfs": "jfs2", "device": "/dev/lv01", "mp": "/local", "mount": "yes"}, "aix")
    r = subprocess.run(command.runnable(argv), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["crfs -v jfs2 -d /dev/lv01 -m /local -A yes", "mount /local"]


def test_aix_remake_on_new_devices_is_refused_in_one_line(aix_bin):
    from conftest import aixsmit

    r = aixsmit("cmd", "restvg", "-q", "-f", "/backup/data.savevg", "--map", "/data=/dev/hdisk2")
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["restvg: --map is for Linux; on AIX name the target disks: restvg -f IMAGE hdiskN ..."]
