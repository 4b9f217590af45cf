"""Volume groups and images: lsvg, mksysb, savevg, lsmksysb, lsbackvg, restore, restvg, verify.

On Linux these are aixsmit's own implementations; on AIX mksysb, savevg, lsmksysb, restvg and
restore run the real commands with the same flags, their output streamed as it comes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys

from ..backup import excludes
from ..errors import AixsmitError
from ..fs.mounts import visible
from ..fs.table import System
from ..fs.volume_groups import find, format_lsvg_l, volume_groups
from .common import add_json, add_root, emit, print_json

MKSYSB_CODES = """exit status (as AIX documents for mksysb/savevg):
  0  success — also when some files changed while being read (0512-003 warning)
  1  mksysb: the command line is wrong        2  savevg: the command line is wrong
  3  the backup failed (0512-005 and others); no image is left behind
  4  interrupted by a signal (0512-007); no image is left behind
"""


class _Signalled(Exception):
    pass


def _trap_signals():
    from ..backup.engine import request_stop  # (the writing engine: imported by the commands that write)

    def handler(signum, frame):
        if not request_stop(signum):  # an image being made stops at its next safe point
            raise _Signalled(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    return old


def _restore_signals(old) -> None:
    for s, h in old.items():
        signal.signal(s, h)


# --- AIX: the real commands ----------------------------------------------------------------

def _aix_passthrough(argv: list[str]) -> int:
    from ..jobs.progress import BackupProgress
    from ..jobs.runner import Finished, Output, run

    rc = 1
    for ev in run(argv, progress=BackupProgress()):
        if isinstance(ev, Output):
            for line in ev.lines:
                emit(line, ev.stream)
        elif isinstance(ev, Finished):
            rc = ev.returncode
    return rc


def aix_mksysb_argv(args) -> list[str]:
    argv = ["mksysb"]
    for flag in ("i", "m", "e", "v", "X", "p"):
        if getattr(args, flag):
            argv.append(f"-{flag}")
    if args.b:
        argv += ["-b", str(args.b)]
    if args.x:
        argv += ["-x", args.x]
    return argv + [args.device]


def aix_savevg_argv(args) -> list[str]:
    argv = ["savevg"]
    for flag in ("i", "m", "e", "v", "r", "p"):
        if getattr(args, flag):
            argv.append(f"-{flag}")
    if args.b:
        argv += ["-b", str(args.b)]
    return argv + ["-f", args.f, args.vg]


# --- commands ------------------------------------------------------------------------------

def cmd_lsvg(args) -> int:
    system = System(root=args.root)
    groups = volume_groups(system)
    if args.l:
        vg = find(system, args.l, groups)
        if args.json:
            print_json(vg.to_json())
        else:
            print(format_lsvg_l(vg))
        return 0
    shown = [g for g in groups if g.active or not args.o]
    if args.json:
        print_json([g.to_json() for g in shown])
    else:
        for g in shown:
            print(g.name)
    return 0


def _image(args, program: str, vg_name: str, device: str, structure_only: bool = False) -> int:
    from ..backup.engine import EXIT_FAILED, EXIT_SIGNAL, BackupFailed, ImageInterrupted, ImageRequest, create_image

    system = System(root=args.root)
    if system.host.name == "aix":
        if args.root != "/":
            raise AixsmitError(f"{program}: --root is not supported on AIX (the real {program} backs up the running system)")
        return _aix_passthrough(aix_mksysb_argv(args) if program == "mksysb" else aix_savevg_argv(args))
    vg = find(system, vg_name)
    excl = excludes.ExcludeList()
    if args.e:
        excl = excludes.load(os.path.join(system.root, "etc", f"exclude.{vg.name}"))
    fs_excl: tuple[str, ...] = ()
    if getattr(args, "x", None):
        fs_excl = tuple(excludes.load_fs_list(args.x))
    req = ImageRequest(program=program, vg=vg, system=system, destination=device,
                       new_data=args.i or args.m or program == "savevg", maps=args.m, excludes=excl,
                       exclude_fs=fs_excl, verbose=args.v, blocks=args.b, structure_only=structure_only,
                       pack=not args.p)
    old = _trap_signals()
    from ..cli import exit_at_once

    exit_at_once()  # everything it writes is written with os.write or closed files
    try:
        result = create_image(req, emit)
    except (_Signalled, ImageInterrupted):
        emit(f"0512-007 {program}: Abnormal program termination.", "stderr")
        return EXIT_SIGNAL
    except BackupFailed as exc:
        for line in str(exc).split("\n"):
            emit(line, "stderr")
        return exc.code or EXIT_FAILED
    finally:
        _restore_signals(old)
    return 0 if result.status in ("OK", "WARN") else EXIT_FAILED


def cmd_mksysb(args) -> int:
    return _image(args, "mksysb", "rootvg", args.device)


def cmd_savevg(args) -> int:
    return _image(args, "savevg", args.vg, args.f, structure_only=args.r)


def _backup_log() -> int:
    from ..backup.destination import read_backup_log
    from ..backup.engine import BACKUP_LOG
    from ..state import state_dir
    from .common import shown

    path = state_dir() / BACKUP_LOG
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if not data:
        print(f"No backup has been recorded yet ({visible(str(path))}).")
        return 0
    print(f"{'DEVICE OR FILE':<40} {'COMMAND':<8} {'DATE':<29} {'SIZE (MB)':>9}  {'VG':<10} RESULT")
    for f in read_backup_log(data):
        f = [shown(f[0])] + [visible(x) for x in f[1:]]  # the device or file: spaces too, as a column
        print(f"{f[0]:<40} {f[1]:<8} {f[2]:<29} {f[4]:>9}  {f[5]:<10} {f[6]}")
    return 0


def _listing(args, program: str, kind: str) -> int:
    from ..backup import archive  # tarfile: only for the commands that read images

    if System(root="/").host.name == "aix":
        cmd = "lsmksysb" if kind == "mksysb" else "listvgbackup"
        argv = [cmd] + (["-B"] if args.B else []) + (["-l"] if args.l else []) + (["-f", args.f] if args.f else [])
        return _aix_passthrough(argv)
    if getattr(args, "B", False):
        return _backup_log()
    if not args.f:
        raise AixsmitError(f"{program}: -f IMAGE is required (or -B for the backup log)", code=2)
    info = archive.read_info(args.f, program)
    if info.kind != kind:
        other = "lsbackvg" if kind == "mksysb" else "lsmksysb"
        raise AixsmitError(f"{program}: {args.f} is a {info.kind} image of {info.vg}; use {other}")
    if args.l:
        print("\n".join(archive.long_header(info)))
        return 0
    from ..fs.mounts import visible

    out = sys.stdout
    for name in archive.list_names(args.f, program):
        out.write(visible(name) + "\n")
    return 0


def cmd_lsmksysb(args) -> int:
    return _listing(args, "lsmksysb", "mksysb")


def cmd_lsbackvg(args) -> int:
    return _listing(args, "listvgbackup", "savevg")


def cmd_restore(args) -> int:
    from ..backup import archive  # tarfile: only for the commands that read images

    if args.x + args.T + args.r != 1:
        raise AixsmitError("restore: give exactly one of -x (extract), -r (a whole file system) and -T (list)", code=2)
    system = System(root="/")
    if system.host.name == "aix":
        argv = ["restore", "-x" if args.x else "-r" if args.r else "-T"] + (["-q"] if args.q else []) + (["-v"] if args.v else [])
        argv += ["-f", args.f, *args.files]
        return _aix_passthrough(argv) if not args.target else _aix_in_dir(argv, args.target)
    if args.T:
        from ..backup.toc import list_contents

        return list_contents(args.f, args.files, emit)
    target = args.target or os.getcwd()
    if args.r:
        from pathlib import Path

        from ..backup.chains import restore_whole
        from .schedule import confirm_removal

        if args.files:
            raise AixsmitError("restore: -r restores a whole file system: name no files (use -x for some)", code=2)
        with read_progress(args.f):
            restore_whole(Path(args.f), target, emit, confirm=confirm_removal(args.yes or args.q))
        emit(f"restore: {args.f} was restored into {target}; restore the next level the same way.", "stdout")
        return 0
    with read_progress(args.f):
        archive.restore(args.f, target, args.files, args.v, emit)
    emit(f"restore: {args.f} was restored into {target}"
         + (f" ({len(args.files)} name(s) asked for)." if args.files else "."), "stdout")
    return 0


def _aix_in_dir(argv: list[str], target: str) -> int:
    cwd = os.getcwd()
    os.chdir(target)
    try:
        return _aix_passthrough(argv)
    finally:
        os.chdir(cwd)


def cmd_restvg(args) -> int:
    from ..backup import archive  # tarfile: only for the commands that read images

    system = System(root=args.root)
    if system.host.name == "aix":
        if args.map:
            raise AixsmitError("restvg: --map is for Linux; on AIX name the target disks: restvg -f IMAGE hdiskN ...",
                               code=2)
        return _aix_passthrough(["restvg", "-f", args.f] + (["-q"] if args.q else []) + list(args.disks))
    info = archive.read_info(args.f, "restvg")
    if info.kind != "savevg":
        raise AixsmitError(f"restvg: {args.f} is a system image (mksysb) of rootvg; restvg restores volume group "
                           "backups only. Restore of Volume Group canceled.")
    if args.map:
        # Remake the group on new devices: file systems made, mounted under the root, restored, in fstab.
        from ..backup.clone import install, parse_map

        mapping = parse_map(args.map)
        install(args.f, mapping, system.root, emit, dry_run=args.dry_run, overwrite=args.overwrite,
                keep_mounted=True, program="restvg", fstab_root=system.root)
        if not args.dry_run:
            emit(f"restvg: Volume group {info.vg} was remade on {', '.join(mapping.values())} from {args.f}.", "stdout")
        return 0
    from ..fs.classify import USER

    table = {e.mount_point: e for e in system.table()}
    fss = [fs.get("FS_NAME", "") for fs in archive.image_data.every(info.stanzas, "fs_data")]
    missing = [fs for fs in fss if fs not in table]
    if missing:
        raise AixsmitError(f"restvg: {missing[0]} of volume group {info.vg} is not mounted under {system.root}; "
                           "mount or create it first. Restore of Volume Group canceled.")
    # A volume group backup restores user file systems only: an image that names / or /etc as
    # one of its file systems would otherwise be let write over the system.
    system_fs = [fs for fs in fss if table[fs].cls != USER]
    if system_fs:
        raise AixsmitError(f"restvg: {args.f} names {system_fs[0]} as a file system of {info.vg}, but it is a "
                           f"{table[system_fs[0]].cls} file system here. Restore of Volume Group canceled.")
    emit(f"Will restore the Volume Group:\t{info.vg}", "stderr")
    emit(f"Target File Systems:\t{' '.join(fss)}", "stderr")
    emit(f"Target Root:\t{system.root}", "stderr")
    # Only the group's own file systems are written: an image holding anything else is refused
    # before anything is written (its information files, under ./tmp/vgdata, are not restored).
    within = [archive._norm(fs) for fs in fss if fs]
    if args.dry_run:
        emit(f"restvg: dry run: nothing was restored; without --dry-run, what {args.f} holds below "
             f"{' '.join(fss)} is written over what is there.", "stdout")
        return 0
    archive.restore(args.f, system.root, [], args.v, emit, program="restvg", within=within,
                    skip=[f"./tmp/vgdata/{info.vg}"])
    emit(f"restvg: Volume group {info.vg} was restored from {args.f}.", "stdout")
    return 0


def cmd_sysbackup(args) -> int:
    from ..backup import sysbackup

    system = System(root=args.root)
    if system.host.name == "aix" and args.root != "/":
        raise AixsmitError("sysbackup: --root is not supported on AIX")
    summary = sysbackup.run(system, args.device, emit, skip_busy=args.skip_busy, exclude=args.e, new_data=True)
    return summary.code


@contextlib.contextmanager
def read_progress(path: str | list[str], quiet: bool = False):
    """While the body reads the image ``path`` (or the images, one after the other, of a list):
    a line every PROGRESS_SECONDS saying how much of them this process and the ones it started
    (tar) have read, ``N of M bytes read (P%)``, M their sizes added up (COMMAND STATUS draws
    its bar from it)."""
    import threading

    from ..backup.engine import PROGRESS_SECONDS, read_chars_tree

    size = 0
    for p in [path] if isinstance(path, str) else path:
        try:
            size += os.path.getsize(p) if os.path.isfile(p) else 0
        except OSError:
            pass
    if quiet or not size:
        yield
        return
    stop = threading.Event()
    base = read_chars_tree(os.getpid())

    def tell() -> None:
        done = 0  # (a child that has ended no longer counts: never go back)
        while not stop.wait(PROGRESS_SECONDS):
            done = max(done, min(max(0, read_chars_tree(os.getpid()) - base), size - 1))
            print(f"{done} of {size} bytes read ({done * 100 // size}%)", flush=True)

    thread = threading.Thread(target=tell, name="aixsmit-read-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def cmd_verify(args) -> int:
    from ..backup import archive  # tarfile: only for the commands that read images

    with read_progress(args.f, quiet=args.json):
        result = archive.verify(args.f)
    if args.json:
        print_json(result.__dict__)
    else:
        print(f"Verified {args.f}: {result.members} members, {result.bytes // (1024 * 1024)} MB of file data read "
              f"in {result.seconds:.1f} s: {result.status}.")
        for line in result.problems + result.warnings + result.notes:
            print(f"  {line}")
    return 1 if result.status == "FAILED" else 0


def register(sub) -> None:
    p = sub.add_parser("lsvg", help="list volume groups (-o: active) or a group's file systems (-l VG)",
                       description="Volume groups as AIX lsvg prints them. On Linux: LVM groups, groups named in "
                                   "the config file, and rootvg (every other local file system).")
    add_root(p); add_json(p)
    p.add_argument("-o", action="store_true", help="only active (varied-on) groups")
    p.add_argument("-l", metavar="VG", help="the logical volumes and mount points of VG")
    p.set_defaults(func=cmd_lsvg)

    common_flags = [
        ("-i", "write a new information file (image.data / vgname.data) into the image"),
        ("-m", "create map files (implies -i); on Linux the device layout is recorded in the information file"),
        ("-e", "leave out what /etc/exclude.VG names (grep regular expressions matched against ./path)"),
        ("-v", "list files as they are backed up"),
    ]
    p = sub.add_parser("mksysb", help="back up rootvg's mounted file systems to a file or device",
                       description="An image of rootvg: every mounted file system of rootvg (user ones too — "
                                   "unmount them first to keep user data out), never other volume groups, virtual "
                                   "or remote mounts. Written to a temporary name, renamed only when complete.",
                       epilog=MKSYSB_CODES, usage_code=1)
    add_root(p)
    for flag, text in common_flags:
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("-X", action="store_true", help="expand /tmp if needed (accepted; aixsmit needs no /tmp space on Linux)")
    p.add_argument("-p", action="store_true", help="disable software packing: the image is not compressed (zstd)")
    p.add_argument("-b", type=int, metavar="N", help="512-byte blocks in a single write (tar blocking factor)")
    p.add_argument("-x", metavar="FILE", help="leave out the file systems FILE names, one mount point per line")
    p.add_argument("device", metavar="DEVICE_OR_FILE", help="where the image goes (absolute path; a host path, not under --root)")
    p.set_defaults(func=cmd_mksysb)

    p = sub.add_parser("savevg", help="back up one volume group's mounted file systems",
                       description="An image of volume group VG with its VG.data information file.",
                       epilog=MKSYSB_CODES, usage_code=2)
    add_root(p)
    for flag, text in common_flags:
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("-r", action="store_true", help="back up the volume group information files only")
    p.add_argument("-p", action="store_true", help="disable software packing: the image is not compressed (zstd)")
    p.add_argument("-b", type=int, metavar="N", help="512-byte blocks in a single write")
    p.add_argument("-f", required=True, metavar="DEVICE_OR_FILE", help="where the image goes (absolute path)")
    p.add_argument("vg", metavar="VG")
    p.set_defaults(func=cmd_savevg)

    for name, kind, text in (("lsmksysb", "mksysb", "list the files in a system image"),
                             ("lsbackvg", "savevg", "list the files in a volume group backup")):
        p = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}: one ./path per member, "
                                                         "or with -l the image's header and logical volumes.")
        p.add_argument("-f", metavar="IMAGE")
        p.add_argument("-l", action="store_true", help="the image's information (VOLUME GROUP, BACKUP DATE/TIME, …)")
        p.add_argument("-B", action="store_true", help="print the backup log: every image made, with its result")
        p.set_defaults(func=cmd_lsmksysb if kind == "mksysb" else cmd_lsbackvg)

    p = sub.add_parser("restore", help="list (-T) or extract (-x) files of an image",
                       description="Extract files of an image into the current directory or --target DIR "
                                   "(all of it, or the FILEs named as ./path). Members that would land outside "
                                   "the target are refused before anything is written.")
    p.add_argument("-x", action="store_true", help="extract (never deletes anything in the target)")
    p.add_argument("-r", action="store_true",
                   help="restore a whole file system from a level backup (the full, then each level in turn), into "
                        "an empty directory or a mount point: what the level restored before held and this one "
                        "records as deleted is removed there, each named first; what no backup held is kept")
    p.add_argument("-T", action="store_true", help="list, with sizes")
    p.add_argument("-q", action="store_true", help="do not ask before starting; with -r as --yes")
    p.add_argument("--yes", action="store_true",
                   help="-r onto a mounted file system: remove, without asking, what the backups recorded as deleted "
                        "(named first); without it a terminal asks, anything else refuses")
    p.add_argument("-v", action="store_true", help="name each file as it is restored")
    p.add_argument("-f", required=True, metavar="IMAGE")
    p.add_argument("--target", metavar="DIR", help="restore into DIR instead of the current directory")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("restvg", help="put a volume group backup back onto its mounted file systems",
                       description="Restore a savevg image onto the file systems of its group, which must be "
                                   "mounted (under --root) at the mount points the image records.")
    add_root(p)
    p.add_argument("-f", required=True, metavar="IMAGE")
    p.add_argument("-q", action="store_true", help="do not ask before starting (AIX; nothing is asked on Linux: see --dry-run)")
    p.add_argument("-v", action="store_true", help="name each file as it is restored")
    p.add_argument("--map", action="append", default=[], metavar="MOUNTPOINT=DEVICE",
                   help="remake the group on new devices: a file system of the recorded type on each")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan; write nothing (with --map: make no file system, touch no device)")
    p.add_argument("--overwrite", action="store_true", help="with --map: allow devices that hold a file system")
    p.add_argument("disks", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_restvg)

    p = sub.add_parser("sysbackup", help="the guide's whole procedure: unmount user data, mksysb, mount again, verify",
                       description="Classify; refuse a destination on a user file system or without room; unmount "
                                   "every user file system (all-or-nothing: a busy one names its holders and nothing "
                                   "changes); check that only the system is mounted; make the image; mount again "
                                   "what was unmounted - always, also on Ctrl-C or SIGTERM; verify; summarise.",
                       epilog="""exit status:
  0  the image is made and verified, and every user file system is mounted again
  1  refused before anything changed (destination, room, busy file system, an earlier run's leftovers)
  3  the backup failed (the user file systems were mounted again; no image is left)
  4  interrupted (the user file systems were mounted again; no image is left)
  5  a user file system could NOT be mounted again: run 'aixsmit cmd mount --ledger'
""", usage_code=2)
    add_root(p)
    busy = p.add_mutually_exclusive_group()
    busy.add_argument("--stop-on-busy", action="store_true", default=True,
                      help="a busy user file system stops the procedure before anything is unmounted (default)")
    busy.add_argument("--skip-busy", action="store_true",
                      help="leave busy user file systems mounted, and out of the image")
    p.add_argument("-e", action="store_true", help="apply /etc/exclude.rootvg")
    p.add_argument("-i", action="store_true", default=True, help="write a new image.data (always done)")
    p.add_argument("device", metavar="DEVICE_OR_FILE")
    p.set_defaults(func=cmd_sysbackup)

    p = sub.add_parser("verify", help="read a whole image and check it against its table of contents",
                       description="Reads every member to its end (a truncated or damaged image fails) and "
                                   "compares the members with the table of contents recorded when the image was "
                                   "made. Exit 0 when readable and complete (warnings for files that changed "
                                   "while the backup ran), 1 otherwise.")
    add_json(p)
    p.add_argument("-f", required=True, metavar="IMAGE")
    p.set_defaults(func=cmd_verify)


# --- crfs, clone, restvg with a device map ------------------------------------------------

def cmd_crfs(args) -> int:
    from ..fs.crfs import crfs, parse_size

    system = System(root=args.root)
    if system.host.name == "aix":
        argv = ["crfs", "-v", args.v, "-d", args.d, "-m", args.m, "-A", args.A] + sum((["-a", a] for a in args.a), [])
        rc = _aix_passthrough(argv)
        # AIX's crfs only records the file system; --mount mounts it, as on Linux.
        return _aix_passthrough(["mount", args.m]) if rc == 0 and args.mount else rc
    size = None
    for attr in args.a:
        key, _, value = attr.partition("=")
        if key != "size":
            raise AixsmitError(f"crfs: -a {attr}: only size= is supported on Linux", code=2)
        size = parse_size(value)
    made = crfs(system, args.v, args.d, args.m, auto=args.A == "yes", size=size, mount=args.mount)
    print(f"Made a {made.vfs} file system on {made.device} (UUID {made.uuid}) for {made.mount_point}; "
          f"recorded in {made.fstab}" + ("; mounted." if args.mount else "."))
    return 0


HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def aix_clone_argv(args) -> list[str]:
    """AIX's clone: ``alt_disk_mksysb -m IMAGE -d DISKS`` (``-B``: leave the boot list alone)."""
    if not args.disk:
        raise AixsmitError("clone: on AIX give the target disks with --disk hdiskN (alt_disk_mksysb -d)", code=2)
    argv = ["alt_disk_mksysb", "-m", args.f, "-d", " ".join(args.disk)]
    if args.bootlist == "no":
        argv.append("-B")
    return argv


def cmd_clone(args) -> int:
    from ..backup.clone import parse_map

    if System(root="/").host.name == "aix":
        return _aix_passthrough(aix_clone_argv(args))
    if not args.disk and not args.map:
        raise AixsmitError("clone: give the blank disk to install onto (--disk DEVICE) or the devices of each "
                           "file system (--map MOUNTPOINT=DEVICE)", code=2)
    if len(args.disk) > 1:
        raise AixsmitError("clone: on Linux clone partitions one disk (--disk once); use --map for several", code=2)
    mapping = parse_map(args.map)
    if args.hostname is not None and not HOSTNAME.fullmatch(args.hostname):
        raise AixsmitError(f"clone: --hostname {args.hostname!r} is not a host name (letters, digits and hyphens, "
                           "in dot-separated labels of at most 63, 253 in all)", code=2)
    if not args.dry_run:
        os.makedirs(args.target, mode=0o700, exist_ok=True)

    def stop(signum, frame):
        # Stopped (F3/cancel, a closed terminal): unwind so that the chroot's binds and the
        # clone's file systems are unmounted; further signals must not cut that short.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        raise AixsmitError(f"clone: stopped by signal {signum}; what was mounted for the clone is unmounted, "
                           "and the target disk is incomplete.")

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        if args.dry_run:
            targets = _clone_install(args, mapping)
        else:
            from ..state import mount_lock

            with mount_lock("clone"):  # it mounts and unmounts; two clones onto one disk wait
                targets = _clone_install(args, mapping)
    finally:
        _restore_signals(old)
    if not args.dry_run:
        print(f"clone: {args.f} is installed on {', '.join(f'{t.mount_point}={t.device}' for t in targets)}.")
    return 0


def _clone_install(args, mapping):
    from ..backup.clone import install

    return install(args.f, mapping, args.target, emit, dry_run=args.dry_run, overwrite=args.overwrite,
                   hostname=args.hostname or "", keep_mounted=args.keep_mounted,
                   disk=args.disk[0] if args.disk else "", layout_file=args.layout or "",
                   boot_disk=args.boot_disk or "", boot=not args.no_boot, initramfs=args.initramfs,
                   new_ssh_keys=args.new_ssh_keys)


def register_clone(sub) -> None:
    p = sub.add_parser("crfs", help="make a file system for user data: mkfs, mount point, fstab",
                       description="Make a VFS file system on DEVICE for MOUNTPOINT (under --root), create the mount "
                                   "point, record it in ROOT/etc/fstab by UUID, mount it with --mount. Refuses a "
                                   "device that holds a file system or is in use.")
    add_root(p)
    p.add_argument("-v", required=True, metavar="VFS", help="ext4, xfs or btrfs (jfs2 on AIX)")
    p.add_argument("-d", required=True, metavar="DEVICE")
    p.add_argument("-m", required=True, metavar="MOUNTPOINT")
    p.add_argument("-A", choices=("yes", "no"), default="yes", help="mount at system restart (fstab: no adds noauto)")
    p.add_argument("-a", action="append", default=[], metavar="size=N", help="size in 512-byte blocks, or with M/G")
    p.add_argument("--mount", action="store_true", help="mount it now")
    p.set_defaults(func=cmd_crfs)

    p = sub.add_parser("clone", help="install a system image onto other disks and make it boot",
                       description="Read image.data; partition a blank disk (--disk: GPT, a BIOS boot partition and/or an "
                                   "EFI system partition as the image boots, one partition per file system, sized to "
                                   "fit) or take prepared devices (--map; /boot/efi on an ESP-typed partition); make "
                                   "each file system (a smaller device is fine when the data fits); mount them under "
                                   "TARGET; restore; rewrite fstab, crypttab, resume and GRUB's defaults for the new "
                                   "UUIDs; reset the machine's identity; in a chroot, make the initramfs when needed "
                                   "and install the image's GRUB: for BIOS onto the disk holding / (--boot-disk "
                                   "overrides), for EFI into /boot/efi without NVRAM entries and at the fallback "
                                   "path EFI/BOOT/BOOTX64.EFI. "
                                   "On AIX: alt_disk_mksysb -m IMAGE -d DISKS. Exit 0 when the clone is installed, "
                                   "1 on an error (nothing written when found before), 2 on a usage error.")
    p.add_argument("-f", required=True, metavar="IMAGE")
    p.add_argument("--disk", action="append", default=[], metavar="DEVICE",
                   help="a blank disk to partition and install onto (on AIX: the hdisks for alt_disk_mksysb)")
    p.add_argument("--layout", metavar="FILE", help="partition sizes for --disk: lines MOUNTPOINT SIZE (512M, 2G, rest)")
    p.add_argument("--map", action="append", default=[], metavar="MOUNTPOINT=DEVICE",
                   help="prepared devices, one per file system of the image")
    p.add_argument("--target", required=True, metavar="DIR", help="where the clone's / is mounted while installing")
    p.add_argument("--hostname", metavar="NAME", help="the clone's host name")
    p.add_argument("--boot-disk", metavar="DISK", help="the disk for the boot loader (default: the disk holding /)")
    p.add_argument("--no-boot", action="store_true", help="install no boot loader (the result is a restore, not a clone)")
    p.add_argument("--initramfs", choices=("auto", "yes", "no"), default="auto",
                   help="make the initramfs again: when the source's depends on its machine (auto), always, never")
    p.add_argument("--new-ssh-keys", action="store_true", help="replace the source's SSH host keys with new ones")
    p.add_argument("--bootlist", choices=("yes", "no"), default="yes", help="AIX: set the boot list to the new disks")
    p.add_argument("--dry-run", action="store_true", help="print the plan and every command; touch no device")
    p.add_argument("--overwrite", action="store_true", help="allow devices that already hold a file system")
    p.add_argument("--keep-mounted", action="store_true", help="leave the clone mounted under TARGET")
    p.set_defaults(func=cmd_clone)


def cmd_jobs(args) -> int:
    import time as _t

    from ..jobs import detached

    detached.prune()
    jobs = detached.all_jobs()
    if args.json:
        print_json([dict(j.to_json(), log=str(j.log)) for j in jobs])
        return 0
    if not jobs:
        print("No command has been started from aixsmit in the last week.")
        return 0
    print(f"{'ID':<23} {'STATUS':<8} {'START':<15} {'RC':>3}  COMMAND")
    for j in jobs:
        rc = "" if j.rc is None else str(j.rc)
        cmd = j.command.replace("\n", "\\n")
        print(f"{j.id:<23} {j.status:<8} {_t.strftime('%b %d %H:%M:%S', _t.localtime(j.start)):<15} {rc:>3}  {cmd}")
    return 0


def register_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="commands started from the menus: running and recent, with their logs",
                       description="Commands started from COMMAND STATUS run detached from the terminal; their "
                                   "output is in STATE/jobs/ID/output.log.")
    add_json(p)
    p.set_defaults(func=cmd_jobs)
