"""File-system commands: lsmount, sysonly, holders, umount, mount."""

from __future__ import annotations

import argparse
import sys

from ..errors import AixsmitError
from ..fs.classify import VIRTUAL
from ..fs.mounts import parse_aix_mount, parse_mountinfo, visible
from ..fs.table import Entry, System
from .common import add_json, add_root, gc_paused, print_json, shown

AIX_HEADER = (
    "  node       mounted        mounted over    vfs       date        options      \n"
    "-------- ---------------  ---------------  ------ ------------ --------------- "
)


def _system(args, **kw) -> System:
    fmt = getattr(args, "format", None)
    src = getattr(args, "from_file", None)
    if src:
        import os

        from ..safefile import MOUNT_TABLE_LIMIT, read_bounded

        try:
            text = os.fsdecode(read_bounded(src, MOUNT_TABLE_LIMIT, "mount table"))
        except FileNotFoundError as exc:
            raise AixsmitError(f"--from {src}: {exc.strerror}")
        if fmt is None:
            fmt = "mountinfo" if text[:1].isdigit() else "aix"
        try:
            mounts = parse_mountinfo(text) if fmt == "mountinfo" else parse_aix_mount(text)
        except AixsmitError as exc:
            raise AixsmitError(f"{src}: {exc}") from None
        # Output read from a file gets the defaults of the host it came from.
        host = "aix" if fmt == "aix" else "linux"
        return System(root=args.root, mounts=mounts, host_name=host, **kw)
    return System(root=args.root, **kw)


def _add_from(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="read the mount table from FILE (saved AIX 'mount' output or a mountinfo file) instead of this host")
    p.add_argument("--format", choices=("aix", "mountinfo"),
                   help="what --from FILE holds (default: guessed from its first character)")


def format_table(table: list[Entry]) -> str:
    lines = [AIX_HEADER.rstrip("\n") + " class"]
    add = lines.append
    # Mounts share all their columns but the mount point: each distinct run of them before it
    # (node, device) and after it (type, date, options, class) is escaped and laid out once.
    before: dict[tuple, str] = {}
    after: dict[tuple, str] = {}
    for e in table:
        m = e.mount
        head = before.get((m.node, m.device))
        if head is None:
            head = before[m.node, m.device] = f"{shown(m.node):<8.32} {shown(m.device):<16} "
        key = (m.vfs, m.date, m.options, m.super_options, e.cls)
        tail = after.get(key)
        if tail is None:
            date = visible(m.date) if m.date else ""
            tail = after[key] = f" {shown(m.vfs):<6} {date:<12} {shown(','.join(m.all_options)):<15} {e.cls}"
        add(head + visible(m.mount_point, spaces=True).ljust(16) + tail)
    return "\n".join(lines)


def cmd_lsmount(args) -> int:
    with gc_paused():
        system = _system(args)
        table = system.table()
        if args.json:
            print_json([e.to_json() for e in table], plain=True)
        else:
            sys.stdout.write(format_table(table) + "\n" + class_summary(table) + "\n")
    return 0


def class_summary(table: list[Entry], width: int = 80) -> str:
    """The data class of each mount point, below the table and within ``width`` columns: the
    table's class column lies past column 80, off an 80-column screen (COMMAND STATUS)."""
    import textwrap

    from ..fs.classify import CLASSES

    out = ["", "Data class of each file system:"]
    for cls in CLASSES:
        if cls == VIRTUAL:
            # Only a count and the first three: never the names of every virtual mount.
            count, first = 0, []
            for e in table:
                if e.cls == VIRTUAL:
                    count += 1
                    if count <= 3:
                        first.append(shown(e.mount_point))
            if count:
                some = ", ".join(first) + (", ..." if count > 3 else "")
                out.append(f"  {cls + ':':<9}{count} (never part of an image: {some})"[:width - 1])
            continue
        mps = [shown(e.mount_point) for e in table if e.cls == cls]
        if not mps:
            continue
        out += textwrap.wrap(" ".join(mps), width - 1, initial_indent=f"  {cls + ':':<9}", subsequent_indent=" " * 11,
                             break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)


def cmd_sysonly(args) -> int:
    system = _system(args)
    table = system.table()
    result = system.sysonly(table)
    if args.json:
        print_json(result.to_json())
    else:
        import textwrap

        # The verdict within 80 columns (the table's own lines run past them).
        say = lambda text: print(textwrap.fill(text, 79, subsequent_indent="  ", break_on_hyphens=False))  # noqa: E731
        print(format_table([e for e in table if e.cls != VIRTUAL]))
        print()
        if not result.has_root:
            say("No / in this mount table (empty or partial): it is not the table of a whole system, so it "
                "cannot show that only the system is mounted.")
        elif result.ok:
            say("Only system file systems are mounted: the system image will hold the operating system only.")
        else:
            say(f"User file systems are still mounted: {', '.join(map(shown, result.user))}.")
            say("Unmount them (aixsmit cmd umount --all-user) before backing up the system.")
        if result.remote:
            say(f"Remote file systems mounted (never part of the image): {', '.join(map(shown, result.remote))}.")
    return 0 if result.ok else 1


def cmd_holders(args) -> int:
    from ..fs.holders import LETTER

    if not args.mount.strip():
        raise AixsmitError("holders: give the mount point of a mounted file system (an empty name is none).", code=2)
    system = _system(args)
    all_mounts = system.all_mounts()  # read once: the table and the scan both use it
    table = system.table(all_mounts)
    mp = args.mount.rstrip("/") or "/"
    if not any(e.mount_point == mp for e in table):
        raise AixsmitError(f"holders: {shown(args.mount)}: 0506-347 Cannot find anything mounted there.")
    # A mount is also kept busy by what is mounted below it.
    targets = [e.mount for e in table if e.mount_point == mp or e.mount_point.startswith(mp.rstrip("/") + "/")]
    holders = system.host.holders(targets, all_mounts)
    if args.json:
        print_json([dict(h.to_json(), path=system.shown(h.path)) for h in holders])
        return 0
    if not holders:
        print(f"No process holds {shown(mp)}.")
        return 0
    print(f"{'PID':>7}  {'USER':<10} {'COMMAND':<16} {'ACCESS':<14} PATH")
    for h in holders:
        print(f"{h.pid or '-':>7}  {shown(h.user):<10} {shown(h.command):<16} {h.how + ' (' + LETTER[h.how] + ')':<14} {shown(system.shown(h.path))}")
    return 0


def cmd_umount(args) -> int:
    from ..fs.unmount import Ledger, plan_unmount, unmount
    from ..state import mount_lock

    if not args.mounts and not args.all_user:
        raise AixsmitError("umount: name a mount point, or give --all-user", code=2)
    system = _system(args)
    if args.dry_run:
        return _umount_dry_run(system, args)
    with mount_lock("umount"):
        plan = plan_unmount(system, args.mounts, all_user=args.all_user)
        if plan.empty:
            print("No user file system is mounted: nothing to unmount.")
            return 0
        unmount(system, plan, Ledger(), force=args.force, progress=print)
    return 0


def describe(system: System, plan) -> list[str]:
    """The plan as the dry run prints it: one line per step, in the order the real run uses."""
    lines = []
    for e, rec, why in zip(plan.steps, plan.records, plan.reasons):
        m = e.mount
        what = shown(m.device) + (f"[{shown(m.fs_root)}]" if m.is_bind else "")
        extra = f"; {shown(why)}" if why else ""
        extra += "; its loop device is detached, and attached again when mounted" if rec.detach_loop else ""
        lines.append(f"would unmount {shown(e.mount_point)} ({what}, {shown(m.vfs)}, {shown(','.join(m.all_options))}, {e.cls}{extra})")
    return lines


def _umount_dry_run(system: System, args) -> int:
    from ..fs.unmount import holder_lines, plan_unmount

    plan = plan_unmount(system, args.mounts, all_user=args.all_user)
    if plan.empty:
        print("No user file system is mounted: nothing to unmount.")
        return 0
    print("\n".join(describe(system, plan)))
    holders = system.host.holders([e.mount for e in plan.steps], system.all_mounts())
    if holders:
        print("These processes would keep it busy:")
        print("\n".join(holder_lines(holders, system)))
        return 1
    return 0


def cmd_mount(args) -> int:
    from ..fs.unmount import Ledger, mount_again
    from ..state import mount_lock

    if not args.mounts and not args.ledger:
        raise AixsmitError("mount: name a mount point, or give --ledger", code=2)
    system = _system(args)
    with mount_lock("mount"):
        ledger = Ledger()
        if args.ledger and not args.mounts and not ledger.under(system.root):
            print("The ledger is empty: aixsmit left no file system unmounted.")
            return 0
        mount_again(system, ledger, args.mounts, from_ledger=args.ledger, progress=print)
    return 0


def cmd_lsfs(args) -> int:
    """Every file system fstab names (under --root), in AIX lsfs's columns."""
    import os

    from ..fs import fstab

    system = _system(args)
    mounted = {e.mount_point: e for e in system.table()}
    try:
        entries = fstab.read(system.root, strict=True)
    except OSError as exc:
        raise AixsmitError(f"lsfs: {fstab.path(system.root)}: {exc.strerror}")
    rows = []
    for fe in entries:
        if fe.vfs in ("swap", "none"):
            continue
        mp, opts = fe.mount_point, fe.options
        e = mounted.get(mp)
        size = "--"
        if e is not None:
            try:
                st = os.statvfs(e.mount.path)
                size = str(st.f_blocks * st.f_frsize // 512)
            except OSError:
                pass
        rows.append({"name": fe.device, "nodename": "--", "mount_point": mp, "vfs": fe.vfs, "size": size,
                     "options": opts, "auto": "no" if "noauto" in opts.split(",") else "yes", "mounted": e is not None})
    if args.json:
        print_json(rows)
        return 0
    print(f"{'Name':<15} {'Nodename':<10} {'Mount Pt':<22} {'VFS':<5} {'Size':<7} {'Options':<10} {'Auto':<4} Accounting")
    for r in rows:
        print(f"{shown(r['name']):<15} {r['nodename']:<10} {shown(r['mount_point']):<22} {r['vfs']:<5} {r['size']:<7} "
              f"{r['options']:<10} {r['auto']:<4} no")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lsfs", help="list the file systems fstab names, mounted or not",
                       description="The file systems of ROOT/etc/fstab in AIX lsfs's columns (Size in 512-byte "
                                   "blocks when mounted, -- otherwise).")
    add_root(p); add_json(p)
    p.set_defaults(func=cmd_lsfs)

    p = sub.add_parser("lsmount", help="list mounted file systems with their data class",
                       description="The mounted file systems as AIX 'mount' prints them, with a data-class column "
                                   "(system, user, virtual, remote).")
    add_root(p); add_json(p); _add_from(p)
    p.set_defaults(func=cmd_lsmount)

    p = sub.add_parser("sysonly", help="the guide's check: is only the operating system mounted?",
                       description="Exit 0 when no user file system is mounted, 1 when some are. "
                                   "Remote and virtual mounts are reported but do not fail the check.")
    add_root(p); add_json(p); _add_from(p)
    p.set_defaults(func=cmd_sysonly)

    p = sub.add_parser("holders", help="who keeps a mounted file system busy",
                       description="Processes using MOUNT (or anything mounted below it): pid, user, command, "
                                   "and how (cwd, root, executable, open file, memory map); also a loop device backed by "
                                   "a file on it and a swap file on it (no process: pid -).")
    add_root(p); add_json(p)
    p.add_argument("mount", metavar="MOUNT")
    p.set_defaults(func=cmd_holders)

    p = sub.add_parser("umount", help="unmount user file systems, all-or-nothing, recorded in the ledger",
                       description="Unmount MOUNT (with what is mounted below or over it, and what depends on it: a loop "
                                   "file system whose image lies on it, an overlay whose layers do) or every user file system. "
                                   "System and virtual file systems are refused. A busy file system names its "
                                   "holders and nothing is unmounted. If one of a group fails, the others are "
                                   "mounted again.")
    add_root(p)
    p.add_argument("mounts", nargs="*", metavar="MOUNT")
    p.add_argument("--all-user", action="store_true", help="every mounted user file system")
    p.add_argument("--dry-run", action="store_true", help="show the plan and any holders; change nothing")
    p.add_argument("--force", action="store_true", help="umount -f (network file systems only); skips the holder check")
    p.set_defaults(func=cmd_umount)

    p = sub.add_parser("mount", help="mount file systems again (from the ledger or fstab)",
                       description="Mount MOUNT again from the ledger of what aixsmit unmounted (or from fstab), "
                                   "or with --ledger everything aixsmit left unmounted, parents first.")
    add_root(p)
    p.add_argument("mounts", nargs="*", metavar="MOUNT")
    p.add_argument("--ledger", action="store_true", help="everything the ledger records as unmounted by aixsmit")
    p.set_defaults(func=cmd_mount)
