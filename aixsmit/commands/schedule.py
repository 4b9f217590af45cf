"""backup (by level) and schedule (add, list, remove, run, restore)."""

from __future__ import annotations

import os

from ..errors import AixsmitError
from ..fs.mounts import visible
from ..fs.table import System
from .common import add_json, add_root, emit, print_json


def cmd_backup(args) -> int:
    if args.i:
        from .byname import cmd_backup_by_name

        return cmd_backup_by_name(args)
    if args.level is None:
        raise AixsmitError("backup: give a level, -0 (full) to -9, or -i (by name)", code=2)
    if len(args.fs) != 1:
        raise AixsmitError("backup: a backup by level is of one file system: name its mount point", code=2)
    args.fs = args.fs[0]
    system = System(root=args.root)
    if system.host.name == "aix":
        from .backup import _aix_passthrough

        argv = ["backup", f"-{args.level}"] + (["-u"] if args.u else []) + ["-f", args.f, args.fs]
        return _aix_passthrough(argv)
    from ..backup.incremental import backup_fs

    mp = os.path.normpath(args.fs)
    res = backup_fs(system.abs_path(mp), mp, args.level, args.f, args.u, emit)
    return 0 if res.status in ("OK", "WARN") else 3


def confirm_removal(yes: bool):
    """The question a whole-file-system restore asks before it removes anything from a mounted
    file system: yes with ``--yes`` (the menus ask ARE YOU SURE first), else asked on the
    terminal; no terminal, no removal."""
    import sys

    def ask(names: list[str]) -> bool:
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False
        sys.stdout.write(f"Remove these {len(names)} name(s) from the mounted file system (named above)? [y/N] ")
        sys.stdout.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return ask


def _install(schedules, previous, via: str | None = None) -> str:
    """Write ``schedules`` for the scheduler in use; if that fails, put the list back as it was,
    so that no schedule is kept that nothing would run."""
    from ..jobs import schedule as sch, scheduler

    sched = scheduler.detect(System(root="/").host.name, via)
    sch.save(schedules)
    try:
        scheduler.install(schedules, sched)
    except AixsmitError:
        sch.save(previous)
        raise
    if via:
        scheduler.choose(via)
    if sched.problem:
        emit(f"schedule: WARNING: {sched.problem}", "stderr")
    return sched.note


def _dst_note(hour: int, minute: int) -> None:
    from ..jobs import scheduler

    zone = scheduler.local_zone()
    clashes = scheduler.dst_clashes(hour, minute, zone)
    if clashes:
        day, how = clashes[0]
        name = getattr(zone, "key", None) or "the local time zone"
        name = "the local time zone" if name == "localtime" else name
        emit(f"schedule: note: in {name}, {hour:02d}:{minute:02d} is {how} on {day:%Y-%m-%d} (a daylight-saving "
             f"change): cron may {'skip or shift that run' if how == 'skipped' else 'run it twice'}"
             + (f", and {clashes[1][1]} on {clashes[1][0]:%Y-%m-%d}" if len(clashes) > 1 else "")
             + ". Choose a time between 04:00 and 21:00 to avoid it.", "stderr")


def _when(args, s) -> None:
    from ..jobs import schedule as sch

    if s.kind == "system":
        if args.weekly:
            s.day, s.hour, s.minute = sch.parse_when(args.weekly, daily=False)
        elif getattr(args, "daily", None):
            raise AixsmitError("schedule: a system schedule is weekly: give --weekly DAY@HH:MM", code=2)
        return
    if args.weekly:
        raise AixsmitError("schedule: a user schedule runs daily: give --daily HH:MM and --full-day DAY", code=2)
    if args.daily:
        _, s.hour, s.minute = sch.parse_when(args.daily, daily=True)
    if args.full_day:
        s.day = sch.parse_when(f"{args.full_day}@00:00", daily=False)[0]


def _until(date: str | None):
    import datetime as dt

    if not date:
        return None
    try:
        return dt.datetime.strptime(date, "%Y-%m-%d") + dt.timedelta(days=1) - dt.timedelta(seconds=1)
    except ValueError:
        raise AixsmitError(f"schedule: --date {date}: give YYYY-MM-DD", code=2)


def _fs_of(s, fs: str) -> str:
    mp = os.path.normpath(fs)
    if s.kind != "user":
        raise AixsmitError(f"schedule: {s.id} makes system images; restore them with restore -x or clone.", code=2)
    if not s.all_user and mp not in s.filesystems:
        raise AixsmitError(f"schedule: {s.id} does not back up {mp} (it backs up {' '.join(s.filesystems)}).", code=2)
    return mp


def _print_changes(runs, as_json: bool) -> None:
    if as_json:
        from dataclasses import asdict

        print_json([asdict(r) for r in runs])
        return
    for r in runs:
        print(f"{r.stamp}  level {r.level}  {os.path.basename(r.archive)}: {len(r.added)} added, {len(r.changed)} "
              f"changed, {len(r.renamed)} renamed, {len(r.deleted)} deleted")
        rows = ([("+", n) for n in r.added] + [("~", n) for n in r.changed]
                + [(">", f"{a} -> {b}") for a, b in r.renamed] + [("-", n) for n in r.deleted])
        for mark, n in rows:
            print(f"  {mark} {visible(n)}")


def cmd_schedule(args) -> int:
    from ..jobs import schedule as sch, scheduler

    if args.action in ("add", "change"):
        args.filesystems = getattr(args, "filesystems", None) or []
        schedules = sch.load()
        if args.action == "add":
            if args.kind == "system":
                if not args.weekly:
                    raise AixsmitError("schedule add system: give --weekly DAY@HH:MM", code=2)
                s = sch.Schedule(sch.new_id("system", schedules), "system", args.dest, 0, 0, 0)
            else:
                if not args.daily:
                    raise AixsmitError("schedule add user: give --daily HH:MM", code=2)
                if not args.filesystems and not args.all_user:
                    raise AixsmitError("schedule add user: name the file systems, or give --all-user", code=2)
                s = sch.Schedule(sch.new_id("user", schedules), "user", args.dest, 0, 0, 0, daily=True)
                args.full_day = args.full_day or "sun"
            s.root = os.path.realpath(args.root)
            s.keep_weeks = args.keep if args.keep is not None else 4
        else:
            import copy

            s = copy.deepcopy(sch.find(args.id, schedules))
            if args.dest:
                s.dest = args.dest
            if args.keep is not None:
                s.keep_weeks = args.keep
        if s.kind == "user" and (args.filesystems or args.all_user):
            s.filesystems = [os.path.normpath(f) for f in args.filesystems]
            s.all_user = bool(args.all_user) and not s.filesystems
        elif s.kind == "system" and (args.filesystems or args.all_user):
            raise AixsmitError("schedule: a system schedule takes no file systems", code=2)
        _when(args, s)
        sch.check(s)
        _dst_note(s.hour, s.minute)
        new = [x for x in schedules if x.id != s.id] + [s]
        new.sort(key=lambda x: (x.kind, int(x.id[len(x.kind):])))
        where = _install(new, schedules)
        verb = "Added" if args.action == "add" else "Changed"
        print(f"{verb} {s.id}: {s.describe()}; next run {s.next_run():%a %Y-%m-%d %H:%M}. Written for {where}.")
        return 0
    if args.action == "list":
        schedules = sch.load()
        sched = scheduler.detect(System(root="/").host.name)
        if args.json:
            print_json({"scheduler": {"kind": sched.kind, "where": sched.where, "running": sched.running,
                                      "note": sched.note, "problem": sched.problem},
                        "schedules": [dict(id=s.id, kind=s.kind, what=s.describe(), dest=s.dest, cron=s.cron_fields(),
                                           next_run=f"{s.next_run():%Y-%m-%d %H:%M}", last=sch.last_run(s.id))
                                      for s in schedules]})
            return 0
        if not schedules:
            print("No backups are scheduled.")
            return 0
        print(f"Run by {sched.note}")
        if sched.problem:
            print(f"WARNING: {sched.problem}")
        # Within 80 columns: the COMMAND STATUS pane and a console show it whole.
        print(f"{'ID':<9} {'WHAT':<32} {'NEXT RUN':<15}  LAST RUN")
        for s in schedules:
            last = sch.last_run(s.id)
            shown = f"{last.get('result', '')} {last.get('start', '')[5:16]}".strip() or "never run"
            what = visible(s.describe(), backslash=False)
            print(f"{s.id:<9} {what[:32]:<32} {s.next_run():%a %m-%d %H:%M}  {shown}")
            if len(what) > 32:
                print(f"{'':<9} {what}")
            if last:
                print(f"{'':<9} log: {visible(last.get('log', ''))}")
        return 0
    if args.action == "remove":
        schedules = sch.load()
        sch.find(args.id, schedules)
        _install([s for s in schedules if s.id != args.id], schedules)
        print(f"Removed {args.id}. Its backups stay in place.")
        return 0
    if args.action == "install":
        schedules = sch.load()
        print(f"{len(schedules)} schedule(s) written for {_install(schedules, schedules, args.via)}.")
        return 0
    if args.action == "run":
        quiet = (lambda line, stream: None) if args.quiet else emit
        return sch.run_schedule(args.id, quiet)
    if args.action in ("restore", "changes"):
        from ..backup import chains

        s = sch.find(args.id)
        mp = _fs_of(s, args.fs)
        folder = chains.fs_folder(s.dest, mp)
        until = _until(args.date)
        if args.action == "changes":
            _print_changes(chains.changes(chains.pick(folder, mp, until)), args.json)
            return 0
        from .backup import read_progress

        # The archives it reads, with the same progress as restore -x and -r (a dry run reads
        # only their directory records: no progress).
        archives = [str(p) for p in chains.pick(folder, mp, until).archives(until)]
        with read_progress(archives, quiet=args.dry_run):
            chains.restore_chain(folder, mp, until, args.target, emit, dry_run=args.dry_run,
                                 confirm=confirm_removal(args.yes))
        if not args.dry_run:
            print(f"Restored {mp} as of {args.date or 'the last backup'} into {args.target}.")
        return 0
    raise AixsmitError("schedule: add, change, list, remove, run, restore, changes or install", code=2)


def register_backup(sub) -> None:
    p = sub.add_parser("backup", help="back up a file system by level (0 full, 1-9 incremental), or files by name (-i)",
                       description="AIX backup -LEVEL [-u] -f DEST FS: level 0 is everything, level N what changed "
                                   "since the last backup at a lower level; -u records it. On Linux GNU tar "
                                   "--listed-incremental; restoring the full and then the level 1 reproduces the "
                                   "tree, deleted files included. AIX backup -i -f DEST [-v] [-C DIR] [NAME...]: "
                                   "the files and directories named (or, with none, read from standard input one a "
                                   "line), relative to DIR; restore -x puts them back, restore -T lists them.")
    add_root(p)
    for n in range(10):
        p.add_argument(f"-{n}", dest="level", action=_Level, const=n, help="full backup" if n == 0 else argparse_suppress())
    p.add_argument("-u", action="store_true", help="record the backup (dumpdates), so later levels build on it")
    p.add_argument("-i", action="store_true", help="back up by name: the files and directories NAME, with all below them")
    p.add_argument("-v", action="store_true", help="with -i: name each file as it is backed up")
    p.add_argument("-C", metavar="DIR", help="with -i: the directory the names are relative to (default: the current "
                                             "one; under --root, DIR is inside it)")
    p.add_argument("-f", required=True, metavar="DEST", help="the archive file to write (absolute)")
    p.add_argument("fs", nargs="*", metavar="FS|NAME",
                   help="the mounted file system (mount point); with -i the files and directories to back up")
    p.set_defaults(func=cmd_backup)


def register(sub) -> None:
    p = sub.add_parser("schedule", help="weekly system images and daily user backups, by cron or systemd timers",
                       description="Schedules live in the state directory (schedules.json) and are run by cron "
                                   "(/etc/cron.d/aixsmit, AIXSMIT_CRON_DIR overrides; AIX: root's crontab) or, where "
                                   "systemd is the init system, by timers (/etc/systemd/system/aixsmit-ID.timer, "
                                   "AIXSMIT_UNIT_DIR overrides). Each run keeps a log and a record in runs/ID/ of the "
                                   "state directory; a failed or skipped run goes to the system log and by mail to "
                                   "root. Exit status: 0 done, 1 failed or skipped, 2 wrong usage.")
    ss = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    ss.required = True
    add = ss.add_parser("add", help="add a schedule: 'add system --weekly sun@05:30 --dest DIR' or "
                                    "'add user FS...|--all-user --daily 04:00 --dest DIR'")
    kinds = add.add_subparsers(dest="kind", metavar="KIND", parser_class=type(p))
    kinds.required = True
    # A parser of its own per kind, so that file systems named after the options (as the menus
    # put them) are still this command's.
    a_sys = kinds.add_parser("system", help="a weekly system image (the guided procedure)")
    a_user = kinds.add_parser("user", help="daily backups by level of user file systems")
    c = ss.add_parser("change", help="change a schedule: its times, file systems, destination or weeks kept")
    c.add_argument("id", metavar="ID")
    for x in (a_sys, a_user, c):
        if x is not a_sys:
            x.add_argument("filesystems", nargs="*", metavar="FS", help="user: the file systems (mount points)")
            x.add_argument("--daily", metavar="HH:MM", help="user: the daily run (level 1; level 0 on --full-day)")
            x.add_argument("--full-day", metavar="DAY", help="user: the day of the full backup (default sun)")
            x.add_argument("--all-user", action="store_true", help="user: every user file system mounted at run time")
        if x is not a_user:
            x.add_argument("--weekly", metavar="DAY@HH:MM", help="system: the weekly image, for example sun@05:30")
        x.add_argument("--dest", required=x is not c, metavar="DIR", help="the existing directory the backups go to")
        x.add_argument("--keep", type=int, metavar="WEEKS", help="weeks of backups to keep (default 4)")
        if x is not c:
            add_root(x)
        x.set_defaults(filesystems=[], daily=None, full_day=None, all_user=False, weekly=None)
    lp = ss.add_parser("list", help="the schedules, what runs them, their next run and last result")
    add_json(lp)
    x = ss.add_parser("remove", help="remove a schedule (its backups stay)")
    x.add_argument("id", metavar="ID")
    x = ss.add_parser("run", help="run a schedule now (what cron and the timers call)")
    x.add_argument("id", metavar="ID")
    x.add_argument("--quiet", action="store_true", help="print nothing: the run's log and record keep it all")
    x = ss.add_parser("install", help="write every schedule again for the scheduler in use (or --via)")
    x.add_argument("--via", choices=("cron", "systemd"), help="cron (a cron.d file) or systemd (timer units)")
    for name, text in (("restore", "restore a file system, as a whole, from a user schedule's chain"),
                       ("changes", "the files each run of a chain added, changed, renamed and deleted")):
        r = ss.add_parser(name, help=text)
        r.add_argument("id", metavar="ID")
        r.add_argument("--fs", required=True, metavar="FS", help="the file system (mount point)")
        r.add_argument("--date", metavar="YYYY-MM-DD", help="the state at the end of that day (default: the latest)")
        if name == "restore":
            r.add_argument("--target", required=True, metavar="DIR",
                           help="an empty directory, or the mount point of the file system to restore: what a backup "
                                "held and a later one recorded as deleted is removed there, each named first; what "
                                "no backup held is kept")
            r.add_argument("--dry-run", action="store_true",
                           help="only say which backups would be read and what in the target would be removed")
            r.add_argument("--yes", action="store_true",
                           help="remove from a mounted file system, without asking, what the backups recorded as "
                                "deleted (named first); without it a terminal asks, anything else refuses")
        else:
            add_json(r)
    p.set_defaults(func=cmd_schedule)


class _Level(__import__("argparse")._StoreConstAction):
    """-0 to -9, once: argparse reads ``-9999`` as four -9 flags; AIX levels are one digit."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            raise __import__("argparse").ArgumentError(self, "give one level, -0 (full) to -9: a level is one digit")
        setattr(namespace, self.dest, self.const)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


