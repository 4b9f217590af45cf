"""The walk: which files an image holds, in which order, and its table of contents.

walk() goes through the volume group's mounted file systems depth first, as tar's own
recursion would, and hands the names to tar in chunks (streams.ListFeed carries them), while it
writes the table of contents (``backup.toc``, the image's last member) as it goes. With two tar
streams it shares the files between them by inode number and gives every directory to the
second.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from .excludes import ExcludeList
from .stop import check_stop

# The table of contents: this line, then one record per entry: its kind letter (f d l c b p),
# its name and a NUL. A name is a whole ./path, or (version 3) a name without a slash, below the
# directory of the last record of kind "/" (a ./path, not an entry itself): each directory's
# path is written once, not again with each of its entries (a third of the bytes; packed, a
# fifteenth). Version 2 had whole ./paths only, which version 3 still reads.
TOC_VERSION = "aixsmit-toc 3"
TOC_VERSIONS = ("aixsmit-toc 2", TOC_VERSION)
# With two tar streams, the first takes FIRST_SHARE files in 20 (by inode number). The second
# one's archive costs one more copy (a pipe, memory, then the image) and its tar also has every
# directory; what it holds when the first ends is written while it finishes. 11 in 20 ended the
# two together best on 50,000 small files (10, 11, 12 and 13 tried, eight runs each).
FIRST_SHARE = 11


def walk(root: str, include: list[str], prune: set[str], skip: set[str], excludes: ExcludeList,
         sinks: list[Callable[[bytes, int], None]], toc_path: str, skip_names: tuple[bytes, ...] = ()) -> int:
    """Hand the ``sinks`` the backup list, in chunks of NUL-terminated ``./names`` (and how
    many names each holds), and write the table of contents: every entry under the ``include``
    mount points (absolute host paths), not descending into ``prune`` (other mounts: their
    mount point directory is kept), leaving out ``skip`` (the destination, work files) and
    what ``excludes`` matches. Returns the number of names.

    With two sinks (two tar streams, the second one's archive following the first's), every
    directory goes to the last one, so a restore sets a directory's owner, mode and times after
    everything the first stream put in it; other entries are shared by inode number (the one
    readdir gives, without a stat), so all names of a hard-linked file reach the same tar.
    (Where readdir's inode numbers are not the file's own, as on some overlay mounts, two names
    of one file may reach different tars: both are then restored, with the same data, as two
    files instead of a link.)"""
    broot = os.fsencode(root.rstrip("/") or "/")
    bprune = {os.fsencode(p) for p in prune}
    # Names to leave out are compared as absolute host paths: one set lookup per entry.
    bskip = {os.fsencode(p) for p in skip}
    for n in skip_names:
        bskip.add((broot.rstrip(b"/") + n[1:]) if n.startswith(b"./") else n)
    seen_dirs: set[bytes] = set()
    exclude = excludes.excludes if excludes else None
    cut = len(broot) if broot != b"/" else 0
    two = len(sinks) > 1
    bufs = [bytearray() for _ in sinks]
    last = len(sinks) - 1
    count = 0
    with open(toc_path, "wb", buffering=1 << 20) as toc:
        toc.write(TOC_VERSION.encode() + b"\n")
        toc_write = toc.write
        toc_dir = [b""]  # the directory (./path + "/") the TOC's relative names are below

        def hand_over(seg: int) -> None:
            # Small chunks (32 KB of names): tar starts on the first ones at once. The names
            # are counted here, in one pass over the chunk, not one by one in the walk.
            nonlocal count
            check_stop()
            buf = bufs[seg]
            names = buf.count(0)
            count += names
            sinks[seg](bytes(buf), names)
            buf.clear()

        def add(kind: bytes, rel: bytes, seg: int = last) -> None:
            # An entry given by its whole ./path (rel), not in the walk's hot loop.
            bufs[seg].extend(rel + b"\0")
            toc_write(kind + rel + b"\0")
            toc_dir[0] = b""
            if len(bufs[seg]) >= 1 << 15:
                hand_over(seg)

        # What to skip and prune, as ./names: the walk works on ./names only.
        def under_root(paths: set[bytes]) -> set[bytes]:
            return {b"." + q[cut:] for q in paths if q.startswith(broot) and (cut == 0 or q[cut:cut + 1] == b"/")}

        rel_skip, rel_prune = under_root(bskip), under_root(bprune)

        # Walk each included mount point once (one below another is walked as part of it).
        # Directories between the root and a mount point (./srv for a group holding /srv/app)
        # are listed too, so a restore recreates them with their owner and mode.
        walked: list[bytes] = []
        for btop in sorted({os.fsencode(i) for i in include}, key=len):
            if any(btop.startswith(t.rstrip(b"/") + b"/") for t in walked):
                continue
            walked.append(btop)
            chain, parent = [], btop
            while len(parent) > len(broot):
                parent = os.path.dirname(parent)
                if len(parent) > len(broot) and parent not in seen_dirs:
                    chain.append(parent)
            for d in reversed(chain):
                seen_dirs.add(d)
                add(b"d", b"." + d[cut:])
            top = b"." + btop[cut:]
            if not (top in rel_skip or (exclude is not None and exclude(os.fsdecode(top)))):
                add(b"d", top)
            # Depth first, each directory's contents right after it (as tar's own recursion
            # orders them), so a restore sets every directory's times after filling it.
            # (The hot loop of a backup: one pass per entry, locals only, each kind inlined.)
            try:
                stack = [(os.scandir(btop), top.rstrip(b"/") + b"/")]
            except OSError:
                continue
            buf0, buf_last = bufs[0], bufs[last]
            here = toc_dir[0]
            while stack:
                it, prefix = stack[-1]
                ent = next(it, None)
                if ent is None:
                    stack.pop()[0].close()
                    continue
                name = ent.name
                rel = prefix + name  # ./path: what tar and the exclude list see
                if rel in rel_skip or (exclude is not None and exclude(os.fsdecode(rel))):
                    continue
                try:
                    if ent.is_file(follow_symlinks=False):
                        kind = b"f"
                        buf = buf0 if not two or ent.inode() % 20 < FIRST_SHARE else buf_last
                    elif ent.is_dir(follow_symlinks=False):
                        kind = b"d"
                        buf = buf_last  # every directory to the last stream
                        if rel not in rel_prune:  # another mount: keep its mount point, not its contents
                            try:
                                stack.append((os.scandir(ent.path), rel + b"/"))
                            except OSError:
                                pass  # vanished or unreadable: tar will say so
                    elif ent.is_symlink():
                        kind = b"l"
                        buf = buf0 if not two or ent.inode() % 20 < FIRST_SHARE else buf_last
                    else:
                        mode = ent.stat(follow_symlinks=False).st_mode
                        if stat.S_ISSOCK(mode):
                            continue  # sockets cannot be archived (AIX skips them too)
                        kind = b"c" if stat.S_ISCHR(mode) else b"b" if stat.S_ISBLK(mode) else b"p"
                        buf = buf0 if not two or ent.inode() % 20 < FIRST_SHARE else buf_last
                except OSError:
                    continue
                buf += rel
                buf += b"\0"
                if prefix is not here:
                    toc_write(b"/" + prefix[:-1] + b"\0")
                    here = prefix
                toc_write(kind + name + b"\0")
                if len(buf) >= 1 << 15:
                    hand_over(0 if buf is buf0 else last)
            toc_dir[0] = here
    for seg, buf in enumerate(bufs):
        if buf:
            hand_over(seg)
    return count
