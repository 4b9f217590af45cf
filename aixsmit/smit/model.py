"""Menus, selectors and dialogs loaded from YAML (``aixsmit/smit/menus/*.yaml``).

SMIT keeps its screens in the ODM (sm_menu_opt, sm_name_hdr, sm_cmd_hdr, sm_cmd_opt); aixsmit
keeps them in YAML. Each document is a list of screens; a screen is one of::

    - menu: FASTPATH            # items lead to other screens
      title: TEXT
      help: TEXT
      items:
        - {label: TEXT, next: FASTPATH, help: TEXT}

    - selector: FASTPATH        # asks for one value, then opens ``next`` with it
      title: TEXT
      field: FIELD
      next: FASTPATH

    - dialog: FASTPATH          # fields that become a command line
      title: TEXT
      command: {aix: [ARGV…], linux: [ARGV…]}
      root: true                # pass --root DIR when aixsmit runs with one (Linux commands)
      ask: false                # ARE YOU SURE? before running
      direct: false             # run at once (no fields): "List All Mounted File Systems"
      warning: TEXT
      progress: backup          # COMMAND STATUS shows a progress bar for this grammar
      help: TEXT
      fields: [FIELD…]

A FIELD: ``name``, ``label``, ``type`` (text, numeric, hex, path, ring, yesno, list, multi),
``required`` (must be filled, always sent), ``always`` (sent even when unchanged), ``default``,
``value`` (a service giving the current value), ``list`` (a service for F4), ``values`` (ring
choices), ``flag`` and ``emit`` (how a value becomes arguments), ``arg: positional``, ``help``,
``note`` (a line shown under the field). A broken file is an error naming file and line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AixsmitError


class _Yaml:
    """PyYAML, imported the first time a menu file is parsed: a start with the menus in the
    cache (below) does not pay for importing it."""

    def __getattr__(self, name):
        import yaml as real

        globals()["yaml"] = real
        return getattr(real, name)


yaml = _Yaml()
MENU_DIR = Path(__file__).parent / "menus"
CACHE_NAME = "menus.cache"

FIELD_TYPES = ("text", "numeric", "hex", "path", "ring", "yesno", "list", "multi")
MARKERS = {"text": "", "numeric": "#", "hex": "X", "path": "/", "ring": "+", "yesno": "+", "list": "+", "multi": "+"}


class MenuError(AixsmitError):
    pass


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str = "text"
    required: bool = False
    always: bool = False
    default: str = ""
    value: str = ""  # service for the current value
    list: str = ""  # service for F4
    values: tuple[str, ...] = ()
    flag: str = ""
    emit: dict = field(default_factory=dict)  # ring value -> [args]
    positional: bool = False
    help: str = ""
    note: str = ""
    template: str = ""  # how a value is written as an argument, such as "size={}"
    line: int = 0

    @property
    def marker(self) -> str:
        m = MARKERS[self.type]
        if self.type == "path" and self.list:
            m = "+/"
        elif self.list and self.type in ("text", "numeric"):
            m = "+" + m
        return m

    @property
    def is_ring(self) -> bool:
        return self.type in ("ring", "yesno")

    @property
    def choices(self) -> tuple[str, ...]:
        return ("yes", "no") if self.type == "yesno" and not self.values else self.values


@dataclass(frozen=True)
class Item:
    label: str
    next: str
    help: str = ""
    line: int = 0


@dataclass(frozen=True)
class Screen:
    kind: str  # menu | selector | dialog | guide
    id: str
    title: str
    help: str = ""
    source: str = ""
    line: int = 0
    items: tuple[Item, ...] = ()
    fields: tuple[Field, ...] = ()
    next: str = ""
    command: dict = field(default_factory=dict)
    root: bool = False
    ask: bool = False
    direct: bool = False
    warning: str = ""
    progress: str = ""


@dataclass
class MenuTree:
    screens: dict[str, Screen]

    def get(self, fastpath: str) -> Screen:
        try:
            return self.screens[fastpath]
        except KeyError:
            raise MenuError(
                "1800-007 There are currently no SMIT\nscreen entries available for this FastPath.\n"
                "This FastPath may require installation of\nadditional software before it can be accessed.")

    def parents(self, fastpath: str) -> list[str]:
        return [s.id for s in self.screens.values() if any(i.next == fastpath for i in s.items) or s.next == fastpath]


# --- loading ---------------------------------------------------------------------------------

def _err(src: str, node, msg: str) -> MenuError:
    return MenuError(f"{src}: line {node.start_mark.line + 1}: {msg}")


def _scalar(src: str, node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _err(src, node, f"{what} must be a single value")
    return str(node.value)


def _bool(src: str, node, what: str) -> bool:
    v = _scalar(src, node, what).lower()
    if v in ("true", "yes", "y"):
        return True
    if v in ("false", "no", "n", ""):
        return False
    raise _err(src, node, f"{what} must be true or false")


def _strs(src: str, node, what: str) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise _err(src, node, f"{what} must be a list")
    return tuple(_scalar(src, n, what) for n in node.value)


def _mapping(src: str, node, what: str) -> list[tuple[str, object]]:
    """A mapping's (key, value node) pairs, in order. A key given twice is an error naming
    both lines: YAML parsers keep the last one silently, so a second ``help:`` would replace
    the first without a word."""
    if not isinstance(node, yaml.MappingNode):
        raise _err(src, node, f"{what} must be a mapping")
    out: list[tuple[str, object]] = []
    seen: dict[str, int] = {}
    for k, v in node.value:
        key = _scalar(src, k, "a key")
        if key in seen:
            raise _err(src, k, f"'{key}' is given twice in {what} (first at line {seen[key]})")
        seen[key] = k.start_mark.line + 1
        out.append((key, v))
    return out


FIELD_KEYS = {"name", "label", "type", "required", "always", "default", "value", "list", "values", "flag",
              "emit", "arg", "help", "note", "template"}


def _field(src: str, node) -> Field:
    kv = dict(_mapping(src, node, "a field"))
    unknown = set(kv) - FIELD_KEYS
    if unknown:
        raise _err(src, node, f"unknown field key '{sorted(unknown)[0]}' (known: {', '.join(sorted(FIELD_KEYS))})")
    for need in ("name", "label"):
        if need not in kv:
            raise _err(src, node, f"a field needs '{need}'")
    ftype = _scalar(src, kv["type"], "type") if "type" in kv else "text"
    if ftype not in FIELD_TYPES:
        raise _err(src, kv["type"], f"type '{ftype}' is not one of {', '.join(FIELD_TYPES)}")
    values = _strs(src, kv["values"], "values") if "values" in kv else ()
    if ftype == "ring" and not values:
        raise _err(src, node, "a ring field needs 'values'")
    emit: dict = {}
    if "emit" in kv:
        for k, v in _mapping(src, kv["emit"], "emit"):
            emit[k] = list(_strs(src, v, f"emit {k}"))
    flag = _scalar(src, kv["flag"], "flag") if "flag" in kv else ""
    positional = False
    if "arg" in kv:
        arg = _scalar(src, kv["arg"], "arg")
        if arg not in ("positional", "flag"):
            raise _err(src, kv["arg"], "arg must be positional or flag")
        positional = arg == "positional"
    if ftype == "yesno" and not emit and flag:
        emit = {"yes": [flag], "no": []}
    default = _scalar(src, kv["default"], "default") if "default" in kv else ""
    choices = values or (("yes", "no") if ftype == "yesno" else ())
    if choices and default and default not in choices:
        raise _err(src, kv["default"], f"default '{default}' is not one of {', '.join(choices)}")
    if ftype == "yesno" and not default:
        default = "no"
    if ftype == "ring" and not default:
        default = values[0]
    if not positional and not flag and not emit and ftype not in ("yesno",):
        raise _err(src, node, f"field '{kv['name'].value}' needs 'flag', 'emit' or 'arg: positional'")
    return Field(
        name=_scalar(src, kv["name"], "name"),
        label=_scalar(src, kv["label"], "label"),
        type=ftype,
        required=_bool(src, kv["required"], "required") if "required" in kv else False,
        always=_bool(src, kv["always"], "always") if "always" in kv else False,
        default=default,
        value=_scalar(src, kv["value"], "value") if "value" in kv else "",
        list=_scalar(src, kv["list"], "list") if "list" in kv else "",
        values=values,
        flag=flag,
        emit=emit,
        positional=positional,
        help=_scalar(src, kv["help"], "help").strip() if "help" in kv else "",
        note=_scalar(src, kv["note"], "note") if "note" in kv else "",
        template=_scalar(src, kv["template"], "template") if "template" in kv else "",
        line=node.start_mark.line + 1,
    )


SCREEN_KEYS = {
    "menu": {"menu", "title", "help", "items"},
    "selector": {"selector", "title", "help", "field", "next"},
    "dialog": {"dialog", "title", "help", "command", "root", "ask", "direct", "warning", "progress", "fields"},
    "guide": {"guide", "title", "help"},
}


def _screen(src: str, node) -> Screen:
    kv = dict(_mapping(src, node, "a screen"))
    kinds = [k for k in ("menu", "selector", "dialog", "guide") if k in kv]
    if len(kinds) != 1:
        raise _err(src, node, "a screen must be exactly one of menu:, selector:, dialog:, guide:")
    kind = kinds[0]
    unknown = set(kv) - SCREEN_KEYS[kind]
    if unknown:
        raise _err(src, node, f"unknown {kind} key '{sorted(unknown)[0]}'")
    sid = _scalar(src, kv[kind], kind)
    if "title" not in kv:
        raise _err(src, node, f"{kind} '{sid}' needs a title")
    common = dict(kind=kind, id=sid, title=_scalar(src, kv["title"], "title"),
                  help=_scalar(src, kv["help"], "help").strip() if "help" in kv else "",
                  source=src, line=node.start_mark.line + 1)
    if kind == "guide":
        return Screen(**common)  # a step-by-step screen built in code (the guided backup)
    if kind == "menu":
        if "items" not in kv or not isinstance(kv["items"], yaml.SequenceNode):
            raise _err(src, node, f"menu '{sid}' needs a list of items")
        items = []
        for it in kv["items"].value:
            ikv = dict(_mapping(src, it, "an item"))
            if "label" not in ikv or "next" not in ikv:
                raise _err(src, it, "an item needs label and next")
            items.append(Item(_scalar(src, ikv["label"], "label"), _scalar(src, ikv["next"], "next"),
                              _scalar(src, ikv["help"], "help").strip() if "help" in ikv else "",
                              it.start_mark.line + 1))
        return Screen(items=tuple(items), **common)
    if kind == "selector":
        if "field" not in kv or "next" not in kv:
            raise _err(src, node, f"selector '{sid}' needs field and next")
        return Screen(fields=(_field(src, kv["field"]),), next=_scalar(src, kv["next"], "next"), **common)
    command: dict = {}
    if "command" not in kv:
        raise _err(src, node, f"dialog '{sid}' needs a command")
    for host, argv in _mapping(src, kv["command"], "command"):
        if host not in ("aix", "linux"):
            raise _err(src, kv["command"], f"command host '{host}' must be aix or linux")
        command[host] = list(_strs(src, argv, f"command {host}"))
    fields = tuple(_field(src, f) for f in kv["fields"].value) if "fields" in kv else ()
    names = [f.name for f in fields]
    if len(names) != len(set(names)):
        raise _err(src, node, f"dialog '{sid}' has two fields with one name")
    return Screen(
        fields=fields, command=command,
        root=_bool(src, kv["root"], "root") if "root" in kv else False,
        ask=_bool(src, kv["ask"], "ask") if "ask" in kv else False,
        direct=_bool(src, kv["direct"], "direct") if "direct" in kv else False,
        warning=_scalar(src, kv["warning"], "warning").rstrip() if "warning" in kv else "",
        progress=_scalar(src, kv["progress"], "progress") if "progress" in kv else "",
        **common,
    )


def load_text(text: str, src: str) -> list[Screen]:
    try:
        # libyaml's loader when present: the menus are read at every start.
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise MenuError(f"{src}: line {mark.line + 1 if mark else '?'}: {(exc.problem or exc.context or 'invalid YAML').strip()}")
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise _err(src, root, "a menu file is a list of screens")
    return [_screen(src, n) for n in root.value]


def load_tree(paths: list[Path] | None = None, services: set[str] | None = None) -> MenuTree:
    """Load every menu file and check that every reference resolves.

    The shipped menus, once checked, are kept in the state directory (``menus.cache``) with
    the size and time of every file, and read from there while none has changed: a start
    then neither imports nor runs the YAML parser."""
    key = None
    if paths is None:
        paths = sorted(MENU_DIR.glob("*.yaml"))
        key = _cache_key(paths, services)
        tree = _cached(key)
        if tree is not None:
            return tree
    screens: dict[str, Screen] = {}
    for path in paths:
        for s in load_text(Path(path).read_text(), str(path)):
            if s.id in screens:
                other = screens[s.id]
                raise MenuError(f"{s.source}: line {s.line}: fastpath '{s.id}' is defined twice "
                                f"(also {other.source}: line {other.line})")
            screens[s.id] = s
    tree = MenuTree(screens)
    check(tree, services)
    if key is not None:
        _store(key, tree)
    return tree


def _cache_key(paths: list[Path], services: set[str] | None) -> str:
    from .. import __version__

    files = []
    for p in paths:
        st = p.stat()
        files.append((p.name, st.st_mtime_ns, st.st_size))
    return repr((__version__, sys.version, files, sorted(services) if services is not None else None))


def _cache_path() -> Path:
    from ..state import state_dir

    return state_dir() / CACHE_NAME


def _cached(key: str) -> "MenuTree | None":
    import pickle

    try:
        with open(_cache_path(), "rb") as f:
            stored_key, tree = pickle.load(f)
    except Exception:  # none yet, unreadable, or from another version: parse the files
        return None
    return tree if stored_key == key and isinstance(tree, MenuTree) else None


def _store(key: str, tree: MenuTree) -> None:
    import pickle

    try:
        from ..safefile import write_file

        write_file(str(_cache_path()), pickle.dumps((key, tree), protocol=pickle.HIGHEST_PROTOCOL), sync=False)
    except (OSError, AixsmitError):
        pass  # no state directory (not root): the menus are parsed at every start


def check(tree: MenuTree, services: set[str] | None = None) -> None:
    for s in tree.screens.values():
        refs = [(i.next, i.line) for i in s.items] + ([(s.next, s.line)] if s.next else [])
        for ref, line in refs:
            if ref not in tree.screens:
                raise MenuError(f"{s.source}: line {line}: '{ref}' is not a defined screen")
        if s.kind == "selector":
            target = tree.screens[s.next]
            if target.kind != "dialog" or s.fields[0].name not in {f.name for f in target.fields}:
                raise MenuError(f"{s.source}: line {s.line}: selector '{s.id}' must lead to a dialog with a field "
                                f"named '{s.fields[0].name}'")
        if services is not None:
            for f in s.fields:
                for svc in (f.list, f.value):
                    if svc and svc not in services:
                        raise MenuError(f"{s.source}: line {f.line}: '{svc}' is not a known list service")
