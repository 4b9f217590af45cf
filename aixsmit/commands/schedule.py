"""backup (by level) and schedule (add, list, remove, run, restore)."""

from __future__ import annotations

import os

from ..errors import AixsmitError
from ..fs.table import System
from .backup import _aix_passthrough, emit
from .common import add_json, add_root, print_json


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
        argv = ["backup", f"-{args.level}"] + (["-u"] if args.u else []) + ["-f", args.f, args.fs]
        return _aix_passthrough(argv)
    from ..backup.incremental import backup_fs

    mp = os.path.normpath(args.fs)
    res = backup_fs(system.abs_path(mp), mp, args.level, args.f, args.u, emit)
    return 0 if res.status in ("OK", "WARN") else 3


def cmd_schedule(args) -> int:
    from ..jobs import schedule as sch

    if args.action == "add":
        schedules = sch.load()
        if args.kind == "system":
            if not args.weekly:
                raise AixsmitError("schedule add system: give --weekly DAY@HH:MM", code=2)
            day, hour, minute = sch.parse_when(args.weekly, daily=False)
            s = sch.Schedule(sch.new_id("system", schedules), "system", os.path.abspath(args.dest), day, hour, minute,
                             root=os.path.realpath(args.root), keep_weeks=args.keep)
        else:
            if not args.daily:
                raise AixsmitError("schedule add user: give --daily HH:MM", code=2)
            if not args.filesystems and not args.all_user:
                raise AixsmitError("schedule add user: name the file systems, or give --all-user", code=2)
            day, hour, minute = sch.parse_when(args.daily, daily=True)
            full = sch.parse_when(f"{args.full_day}@00:00", daily=False)[0]
            s = sch.Schedule(sch.new_id("user", schedules), "user", os.path.abspath(args.dest), full, hour, minute,
                             daily=True, filesystems=[os.path.normpath(f) for f in args.filesystems],
                             all_user=args.all_user, root=os.path.realpath(args.root), keep_weeks=args.keep)
        if 1 <= hour <= 2:
            emit(f"schedule: note: {hour:02d}:{minute:02d} falls in the hours a daylight-saving change repeats "
                 "or skips; cron may run it twice or not at all on those nights.", "stderr")
        schedules.append(s)
        sch.save(schedules)
        where = sch.install_cron(schedules, System(root="/").host.name)
        print(f"Added {s.id}: {s.describe()}; next run {s.next_run():%a %Y-%m-%d %H:%M}. Written to {where}.")
        return 0
    if args.action == "list":
        schedules = sch.load()
        if args.json:
            print_json([dict(id=s.id, kind=s.kind, what=s.describe(), dest=s.dest, cron=s.cron_fields(),
                             next_run=f"{s.next_run():%Y-%m-%d %H:%M}", last=s.last) for s in schedules])
            return 0
        if not schedules:
            print("No backups are scheduled.")
            return 0
        print(f"{'ID':<9} {'WHAT':<46} {'NEXT RUN':<17} LAST RESULT")
        for s in schedules:
            last = f"{s.last.get('result', '')} {s.last.get('start', '')}".strip() or "never run"
            print(f"{s.id:<9} {s.describe()[:46]:<46} {s.next_run():%a %m-%d %H:%M}  {last}")
        return 0
    if args.action == "remove":
        schedules = sch.load()
        sch.find(args.id, schedules)
        schedules = [s for s in schedules if s.id != args.id]
        sch.save(schedules)
        sch.install_cron(schedules, System(root="/").host.name)
        print(f"Removed {args.id}. Its backups stay in place.")
        return 0
    if args.action == "run":
        return sch.run_schedule(args.id, emit)
    if args.action == "restore":
        import datetime as dt

        s = sch.find(args.id)
        when = dt.datetime.strptime(args.date, "%Y-%m-%d") + dt.timedelta(days=1) if args.date else dt.datetime.now()
        sch.restore_chain(s, os.path.normpath(args.fs), when, args.target, emit)
        print(f"Restored {args.fs} as of {args.date or 'the last backup'} into {args.target}.")
        return 0
    raise AixsmitError("schedule: add, list, remove, run or restore", code=2)


def register(sub) -> None:
    p = sub.add_parser("backup", help="back up a file system by level (0 full, 1-9 incremental), or files by name (-i)",
                       description="AIX backup -LEVEL [-u] -f DEST FS: level 0 is everything, level N what changed "
                                   "since the last backup at a lower level; -u records it. On Linux GNU tar "
                                   "--listed-incremental; restoring the full and then the level 1 reproduces the "
                                   "tree, deleted files included. AIX backup -i -f DEST [-v] [-C DIR] [NAME...]: "
                                   "the files and directories named (or, with none, read from standard input one a "
                                   "line), relative to DIR; restore -x puts them back, restore -T lists them.")
    add_root(p)
    for n in range(10):
        p.add_argument(f"-{n}", dest="level", action="store_const", const=n, help="full backup" if n == 0 else argparse_suppress())
    p.add_argument("-u", action="store_true", help="record the backup (dumpdates), so later levels build on it")
    p.add_argument("-i", action="store_true", help="back up by name: the files and directories NAME, with all below them")
    p.add_argument("-v", action="store_true", help="with -i: name each file as it is backed up")
    p.add_argument("-C", metavar="DIR", help="with -i: the directory the names are relative to (default: the current "
                                             "one; under --root, DIR is inside it)")
    p.add_argument("-f", required=True, metavar="DEST", help="the archive file to write (absolute)")
    p.add_argument("fs", nargs="*", metavar="FS|NAME",
                   help="the mounted file system (mount point); with -i the files and directories to back up")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("schedule", help="weekly system images and daily user backups, in cron",
                       description="Schedules live in the state directory and in /etc/cron.d/aixsmit "
                                   "(AIXSMIT_CRON_DIR overrides; AIX: root's crontab).")
    ss = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    ss.required = True
    a = ss.add_parser("add", help="add a schedule: 'add system --weekly sun@02:00 --dest DIR' or "
                                  "'add user FS...|--all-user --daily 01:00 --dest DIR'")
    a.add_argument("kind", choices=("system", "user"))
    a.add_argument("filesystems", nargs="*", metavar="FS", help="user: the file systems (mount points)")
    a.add_argument("--weekly", metavar="DAY@HH:MM", help="system: the weekly image, for example sun@02:00")
    a.add_argument("--daily", metavar="HH:MM", help="user: the daily run (level 1; level 0 on --full-day)")
    a.add_argument("--full-day", default="sun", metavar="DAY", help="user: the day of the full backup (default sun)")
    a.add_argument("--all-user", action="store_true", help="user: every user file system mounted at run time")
    a.add_argument("--dest", required=True, metavar="DIR", help="the folder the backups go to")
    a.add_argument("--keep", type=int, default=4, metavar="WEEKS", help="weeks of backups to keep (default 4)")
    add_root(a)
    lp = ss.add_parser("list", help="the schedules, their next run and last result")
    add_json(lp)
    for name, text in (("remove", "remove a schedule (its backups stay)"), ("run", "run a schedule now (what cron calls)")):
        x = ss.add_parser(name, help=text)
        x.add_argument("id", metavar="ID")
    r = ss.add_parser("restore", help="restore a file system from a user schedule's chain")
    r.add_argument("id", metavar="ID")
    r.add_argument("--fs", required=True, metavar="FS", help="the file system (mount point)")
    r.add_argument("--date", metavar="YYYY-MM-DD", help="the state at the end of that day (default: the latest)")
    r.add_argument("--target", required=True, metavar="DIR", help="where to restore (an empty directory)")
    p.set_defaults(func=cmd_schedule)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


