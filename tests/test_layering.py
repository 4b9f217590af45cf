"""Only aixsmit/tui imports Textual: the services stay usable without a terminal."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parent.parent / "aixsmit"


def test_textual_only_in_tui():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "tui":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == "textual" or n.startswith("textual.") for n in names):
                offenders.append(str(rel))
    assert offenders == []


def test_tui_uses_only_public_names_of_the_services():
    """The TUI is a face of the services: it imports their public names, never a private one
    (``from ..jobs.runner import _lines`` tied it to a helper that may change)."""
    offenders = []
    for path in (PKG / "tui").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and not (node.module or "").startswith("tui"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert offenders == []
