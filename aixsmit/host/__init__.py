"""One host interface, two implementations: AIX (drives the real commands) and Linux."""

from __future__ import annotations

import os

from ..errors import AixsmitError


def host_name() -> str:
    """``aix`` or ``linux``: ``AIXSMIT_HOST`` overrides what the platform says (tests pick one)."""
    name = os.environ.get("AIXSMIT_HOST") or ("aix" if os.uname().sysname == "AIX" else "linux")
    if name not in ("aix", "linux"):
        raise AixsmitError(f"AIXSMIT_HOST={name!r}: must be aix or linux")
    return name


def get_host(name: str | None = None):
    name = name or host_name()
    if name == "aix":
        from .aix import AixHost

        return AixHost()
    from .linux import LinuxHost

    return LinuxHost()
