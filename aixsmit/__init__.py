"""aixsmit: the AIX backup strategy as SMIT-style menus and commands, on AIX and on Linux."""

__version__ = "0.1.0"
