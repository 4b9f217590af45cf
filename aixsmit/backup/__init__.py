"""The image engine: mksysb and savevg on Linux (GNU tar), listing, verification, restore."""
