"""Stopping an image on a signal.

A signal handler that raises at once can raise in the middle of a ``with lock:`` (after the
lock is taken, before the block is entered): the lock is never released, and the threads that
feed tar wait for it for ever. So while an image is being made, a handler only asks for the
stop (request_stop): tar's process groups get SIGTERM at once, and the engine raises
ImageInterrupted at its next safe point (check_stop: the walk checks once per chunk of names,
the wait for tar at least four times a second).

The engine says what it is doing with making(), done() and idle(), and registers each tar's
process group with add_group().
"""

from __future__ import annotations

import os
import signal

from ..errors import AixsmitError


class ImageInterrupted(AixsmitError):
    """A signal stopped the image (the caller reports 0512-007)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)  # SIGTERM, as sysbackup reports it
        self.signum = signum


_state = "idle"  # making (an image is being made), done (it is complete), idle
_stop_signal: int | None = None
_groups: list[int] = []


def request_stop(signum: int) -> bool:
    """For a signal handler. True: an image is being made and will stop (raise
    ImageInterrupted) shortly, or it is complete and there is nothing left to stop (the command
    is ending anyway: a complete image is not reported as an abnormal end); False: no image is
    being made, and the handler should act itself."""
    global _stop_signal
    if _state == "idle":
        return False
    if _state == "done":
        return True
    _stop_signal = signum
    for pgid in list(_groups):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
    return True


def check_stop() -> None:
    """Raise ImageInterrupted if a signal asked for the stop: call it at every safe point."""
    if _stop_signal is not None:
        raise ImageInterrupted(_stop_signal)


def making() -> None:
    """An image is being made: a signal from now on stops it."""
    global _state, _stop_signal
    _state, _stop_signal = "making", None


def done() -> None:
    """The image is complete: a signal has nothing left to stop."""
    global _state
    _state = "done"


def idle() -> None:
    """No image is being made (it failed or was stopped): the handler acts itself."""
    global _state
    _state = "idle"


def add_group(pgid: int) -> None:
    """A tar's process group, to be sent SIGTERM when a stop is requested."""
    _groups.append(pgid)


def forget_groups() -> None:
    _groups.clear()
