"""File systems: the mount table, data classes, holders, unmount and remount."""
