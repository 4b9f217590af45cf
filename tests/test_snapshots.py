"""Snapshots of the main screens at 80x24 (pytest-textual-snapshot; textual is pinned).

After an intended change of the look: pytest tests/test_snapshots.py --snapshot-update, look at
snapshot_report.html, and commit the new SVGs with the change."""

from __future__ import annotations

import pytest

from tui_helpers import make


@pytest.fixture(autouse=True)
def quiet_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIXSMIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AIXSMIT_CONFIG", str(tmp_path / "c.yaml"))
    (tmp_path / "c.yaml").write_text("")
    monkeypatch.delenv("AIXSMIT_ESC_KEYS", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def test_top_menu(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path), terminal_size=(80, 24))


def test_backsys_menu(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "backsys"), terminal_size=(80, 24))


def test_mksysb_dialog(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "mksysb"), terminal_size=(80, 24),
                        press=[*"/backup/sys.mksysb", "down", "down", "tab"])


def test_f4_ring_list(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "mksysb"), terminal_size=(80, 24), press=["down", "f4"])


def test_f6_show_command(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "mksysb"), terminal_size=(80, 24),
                        press=[*"/backup/sys.mksysb", "down", "tab", "f6"])


def test_esc_labels_dialog(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "umountfs", esc_labels=True), terminal_size=(80, 24))


def test_ascii_top_menu(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, ascii_only=True), terminal_size=(80, 24))


def test_ascii_f4_list(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "mksysb", ascii_only=True), terminal_size=(80, 24), press=["down", "f4"])


def test_no_color_dialog(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make(tmp_path, "mksysb"), terminal_size=(80, 24), press=["down", "tab"])


def test_no_color_menu(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make(tmp_path, "backsys"), terminal_size=(80, 24), press=["down"])


def test_f7_edit_window(snap_compare, tmp_path):
    assert snap_compare(make(tmp_path, "mksysb"), terminal_size=(80, 24),
                        press=[*"/backup/weekly/system/images/host1/sys.mksysb", "f7"])
