"""Function-key labels as SMIT shows them, in 20-column cells, with Esc+N variants."""

from __future__ import annotations

import os

LABELS = {
    1: "Help", 2: "Refresh", 3: "Cancel", 4: "List", 5: "Reset", 6: "Command", 7: "Edit", 8: "Image",
    9: "Shell", 10: "Exit",
}

MENU_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Cancel"), (8, "Image"), (9, "Shell"), (10, "Exit"), ("Enter", "Do")]
DIALOG_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Cancel"), (4, "List"), (5, "Reset"), (6, "Command"), (7, "Edit"),
               (8, "Image"), (9, "Shell"), (10, "Exit"), ("Enter", "Do")]
WALK_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Back"), (4, "List"), (6, "Command"), (8, "Image"), (9, "Shell"),
             (10, "Exit"), ("Enter", "Do")]
# COMMAND STATUS: lines wider than the screen scroll sideways (they end in a continuation mark).
STATUS_DONE_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Cancel"), (6, "Command"), (8, "Image"), (9, "Shell"),
                    (10, "Exit"), ("/", "Find"), ("n", "Find Next"), ("Left/Right", "Scroll")]
STATUS_RUNNING_KEYS = [(3, "Cancel"), (10, "Exit"), ("/", "Find"), ("n", "Find Next"), ("Left/Right", "Scroll")]
LIST_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Cancel"), (8, "Image"), (10, "Exit"), ("Enter", "Do"), ("/", "Find"),
             ("n", "Find Next")]
MULTI_KEYS = [(1, "Help"), (2, "Refresh"), (3, "Cancel"), (7, "Select"), (8, "Image"), (10, "Exit"), ("Enter", "Do"),
              ("/", "Find"), ("n", "Find Next")]
POPUP_KEYS = [(1, "Help"), (3, "Cancel"), (8, "Image"), (10, "Exit"), ("Enter", "Do")]

# Terminals on which function keys are unlikely to arrive (aix-smit.md §1.7): show Esc+N labels.
ESC_TERMS = ("vt100", "vt102", "vt220", "dumb", "ansi", "hft", "aixterm-m")


def esc_labels_wanted(flag: bool | None = None) -> bool:
    if flag is not None:
        return flag
    env = os.environ.get("AIXSMIT_ESC_KEYS", "")
    if env:
        return env not in ("0", "no", "false")
    return os.environ.get("TERM", "") in ESC_TERMS


def footer_text(keys, esc: bool, width: int = 80) -> str:
    cells = []
    for key, label in keys:
        if isinstance(key, int):
            name = f"Esc+{key % 10}" if esc else f"F{key}"
        else:
            name = key
        cells.append(f"{name}={label}"[:19].ljust(20))
    per_row = max(1, width // 20)
    rows = ["".join(cells[i:i + per_row]).rstrip() for i in range(0, len(cells), per_row)]
    return "\n".join(rows)


def esc_digits_as_keys() -> None:
    """Esc+N must reach the menus as Esc+N however it arrives.

    Typed fast, over SSH or through tmux, Esc and the digit come in one read, and Textual
    turns those two bytes into a macOS Option character (Esc 1 into "¡", Esc 7 into "¶"),
    which a field would then take as typed text. Without those entries the parser reads
    them as alt+digit, which the application turns into F1..F10 (aix-smit.md §1.7)."""
    from textual import _ansi_sequences

    for digit in "0123456789":
        _ansi_sequences.ANSI_SEQUENCES_KEYS.pop(f"\x1b{digit}", None)
