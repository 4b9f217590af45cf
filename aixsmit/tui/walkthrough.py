"""Guided System Backup (fastpath ``walkthrough``): the guide's procedure, one step a screen.

Each step says why, shows the live facts of this machine and the command it will run (F6), and
runs it in COMMAND STATUS on Enter. After the system image, the walk always goes on to mount
the user file systems again, whatever the backup's result. ``--dry-run`` shows every command
and runs none of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Static

from ..errors import AixsmitError
from ..fs.mounts import visible
from ..smit import command as cmdbuild
from ..smit.model import Screen as ScreenDef
from .keys import WALK_KEYS
from .popups import PRESS_RETURN, FieldInput, MessagePopup, names
from .screens import FKEYS, SmitScreen


@dataclass
class Step:
    title: str
    why: str
    kind: str  # info | dest | run | done
    always_next: bool = False


STEPS = [
    Step("System data and user data", (
        "A system image (mksysb) is meant to hold the operating system only: /, /usr, /var, /tmp "
        "and the like. User data - home directories, databases, application data - lives in file "
        "systems of its own, backed up on its own schedule (savevg, incremental backups). Below is "
        "this machine's mount table with each file system's data class."), "info"),
    Step("Where the image goes", (
        "The image must not go onto a user file system: the next step unmounts them. It needs room "
        "for the used space of the system file systems. Type an absolute file name (or a tape "
        "device); F4 lists existing images and tape devices."), "dest"),
    Step("Unmount, back up, mount again, verify", (
        "mksysb saves every mounted file system of rootvg, user ones too - so the guide unmounts the "
        "user file systems first (all or nothing: a busy one is named with its holders, and nothing "
        "changes), checks that only the system is mounted, makes the image, mounts the user file "
        "systems again - whatever happened - and reads the image back. These are steps 3 to 7, run "
        "as one command (aixsmit cmd sysbackup) that goes on if this terminal goes away, and always "
        "mounts again what it unmounted. Running and Recent Commands shows it again."), "run"),
    Step("Done", (
        "User data is backed up separately: savevg backs up a user volume group now, and scheduled "
        "backups keep doing both every week and every day."), "done"),
]
SHOWN_AS = ["Step 1 of 8", "Step 2 of 8", "Steps 3-7 of 8", "Step 8 of 8"]  # the guide's numbering
RUN, DONE = 2, 3
JOB_TITLE = "Guided System Backup"
RESULTS = {"OK": "OK", "WARN": "OK with warnings", "FAILED": "FAILED"}  # the job's status, as the guide says it


def job_summary(text: str) -> list[str]:
    """The summary ``aixsmit cmd sysbackup`` printed last: its own figures, as lines."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] == "Summary":
            return [l for l in lines[i + 1:] if l.startswith("  ") and not l.startswith("    ")]
    return []


class WalkthroughScreen(SmitScreen):
    BINDINGS = FKEYS + [
        Binding("f4", "list", "List"),
        Binding("f6", "show_command", "Command"),
        Binding("enter", "do", "Do"),
    ]
    KEYS = WALK_KEYS

    def __init__(self, definition: ScreenDef):
        super().__init__(definition)
        self.step = 0
        self.dest = ""
        self.job = None  # the job of steps 3-7 (a detached aixsmit cmd sysbackup)
        self.result = ""  # its end: OK, WARN, FAILED, lost; "dry run"; "" before it ran
        self.continued = False

    # --- layout --------------------------------------------------------------------------
    def body(self) -> ComposeResult:
        with VerticalScroll(id="body"):
            yield Static("", id="step-title", classes="instructions", markup=False)
            yield Static("", id="why", markup=False)
            with Horizontal(id="dest-row"):
                yield Static("* Backup DEVICE or FILE".ljust(52), classes="label", markup=False)
                yield Static("[", classes="bracket")
                dest = FieldInput("", id="dest")
                dest.cursor_blink = False
                yield dest
                yield Static("]", classes="bracket")
                yield Static(" +/", classes="marker")
            yield Static("", id="facts", markup=False)
            yield Static("", id="command", markup=False)
            yield Static("", id="next", markup=False)

    def on_mount(self) -> None:
        picked_up = self._find_job()
        self.show()
        if picked_up:
            # Shown at once, over its steps 3-7: its progress while it runs, its end after.
            self.call_after_refresh(self.follow)

    def _find_job(self) -> bool:
        """A guided backup of this root started earlier (its terminal went away, or the guide
        was left) that still runs, or that ended and was not seen since: the walkthrough picks
        it up at its steps 3-7 instead of starting over, and returns True."""
        if self.app.dry_run or self.app.no_exec:
            return False
        from ..jobs import detached

        try:
            jobs = [j for j in detached.all_jobs() if j.title == JOB_TITLE and self._of_this_root(j.argv)]
            jobs = [j for j in map(detached.refresh, jobs) if j.status == detached.RUNNING or not detached.seen(j)]
        except (OSError, AixsmitError):
            return False
        if not jobs:
            return False
        self.job = jobs[-1]
        self.dest = self.job.argv[-1]
        self.step = RUN
        if self.job.status != detached.RUNNING:
            self.result = RESULTS.get(self.job.status, self.job.status)
        return True

    def _of_this_root(self, argv: list[str]) -> bool:
        """Whether a job's argv (as run: ``... sysbackup [--root DIR] DEST``) backs up this root."""
        return "sysbackup" in argv and argv[argv.index("sysbackup") + 1:-1] == self.root_args()

    def show(self) -> None:
        st = STEPS[self.step]
        dry = "  (dry run: nothing is changed)" if self.app.dry_run else ""
        self.query_one("#title", Static).update(f"{self.definition.title}: {SHOWN_AS[self.step]}")
        self.query_one("#step-title", Static).update(f"{st.title}{dry}")
        self.query_one("#why", Static).update(st.why)
        row = self.query_one("#dest-row")
        row.display = st.kind == "dest"
        if st.kind == "dest":
            inp = self.query_one("#dest", Input)
            inp.value = self.dest or inp.value
            inp.focus()
        try:
            facts = self.facts()
        except AixsmitError as exc:
            facts = f"ERROR: {exc}"
        self.query_one("#facts", Static).update(facts)
        argv = self.argv()
        self.query_one("#command", Static).update(f"Command (F6): {visible(cmdbuild.display(argv))}" if argv else "")
        self.query_one("#next", Static).update("\n" + self.how_to_go_on())

    def how_to_go_on(self) -> str:
        """Every step says which key does what from here."""
        kind = STEPS[self.step].kind
        if kind == "info":
            return "Press Enter to go on.  F3 leaves the guide."
        if kind == "dest":
            return "Type the destination, then press Enter.  F4 lists.  F3 goes back a step."
        if kind == "run":
            if self.job_running():
                return "Press Enter to see it.  F10 leaves (it goes on)."
            if self.result:
                return "Press Enter for the summary.  F3 goes back a step."
            return "Press Enter to run steps 3 to 7.  F3 goes back a step."
        return "Press Enter for volume group backups and schedules.  F3 goes back to steps 3-7."

    # --- the facts and commands of each step ---------------------------------------------
    def root_args(self) -> list[str]:
        return ["--root", self.app.root] if self.app.root != "/" else []

    def argv(self) -> list[str]:
        if self.step != RUN:
            return []
        if self.job is not None:
            return list(self.job.argv)
        return ["aixsmit", "cmd", "sysbackup", *self.root_args(), self.dest]

    def job_running(self) -> bool:
        if self.job is None:
            return False
        from ..jobs import detached

        return detached.refresh(self.job).status == detached.RUNNING

    def system(self):
        self.app._system = None  # always the live state
        return self.app.system

    def user_mounts(self) -> list:
        from ..fs.table import top

        return top(self.system().table(), "user")

    def ledger_entries(self) -> list:
        from ..fs.unmount import Ledger

        return Ledger().under(self.app.root)

    def facts(self) -> str:
        step = self.step
        if step == 0:
            # The class first: a long mount point never pushes it out of view.
            rows = [f"  {'CLASS':<8} {'VFS':<8} {'DEVICE':<20} MOUNTED OVER"]
            for e in self.system().table():
                if e.cls != "virtual":
                    rows.append(f"  {e.cls:<8} {visible(e.mount.vfs):<8} {visible(e.mount.device)[:20]:<20} {visible(e.mount_point)}")
            virtual = sum(1 for e in self.system().table() if e.cls == "virtual")
            rows.append(f"  (and {virtual} virtual file systems: /proc, /sys, ...)")
            return "\n".join(rows)
        if step == 1:
            return self.dest_facts(self.query_one("#dest", Input).value or self.dest)
        if step == RUN:
            if self.job_running():
                when = time.strftime("%H:%M", time.localtime(self.job.start))
                return f"The guided backup started at {when} is running (image: {visible(self.dest)})."
            out = [f"Steps 3 to 7 ended: {self.result}."] if self.result else []
            users = self.user_mounts()
            if not users:
                return "\n".join(out + ["No user file system is mounted: nothing to unmount."])
            out.append(("User file systems mounted: " if self.result else "User file systems to unmount: ")
                       + names(e.mount_point for e in users))
            holders = self.system().host.holders([e.mount for e in users], self.system().all_mounts())
            if holders:
                from ..fs.unmount import holder_lines

                out.append("BUSY - these processes keep them in use (stop them, then press F2):")
                out += holder_lines(holders, self.system())
            else:
                out.append("No process holds them.")
            return "\n".join(out)
        if step == DONE:
            return self.summary()
        return ""

    def dest_facts(self, dest: str) -> str:
        from ..backup import sysbackup
        from ..fs.unmount import plan_unmount

        if not dest:
            return ""
        system = self.system()
        plan = plan_unmount(system, [], all_user=True)
        required, available = sysbackup.check_destination(system, dest, list(plan.steps), sysbackup.estimate(system, []))
        return f"About {required // (1024 * 1024) + 1} MB are needed; {available // (1024 * 1024)} MB are available there."

    def summary(self) -> str:
        """The job's own summary (sysbackup's figures: size, files, duration, verify), and
        anything still left unmounted."""
        if self.app.dry_run:
            return "Dry run: nothing was run, no image was made."
        lines: list[str] = []
        if self.job is not None:
            try:
                text = self.job.log.read_text(errors="replace")
            except OSError:
                text = ""
            lines = job_summary(text)
            if not lines:
                lines = [f"  The backup job ended without its summary ({self.result or 'not run'}); "
                         "its output is in Running and Recent Commands."]
        else:
            lines = ["  Steps 3 to 7 were not run: no image was made."]
        still = self.ledger_entries()
        if still:
            lines.append("LEFT UNMOUNTED: " + names(e.mount_point for e in still) + " - run: aixsmit cmd mount --ledger")
        return "\n".join(lines)

    # --- keys ------------------------------------------------------------------------------
    def help_text(self) -> str:
        st = STEPS[self.step]
        return f"{st.title}\n\n{st.why}"

    def action_refresh(self) -> None:
        self.show()

    def action_list(self) -> None:
        if STEPS[self.step].kind != "dest":
            return

        def chosen(v):
            if v:
                self.query_one("#dest", Input).value = v

        self.app.open_list("Backup DEVICE or FILE", "backup_destinations", chosen)

    def action_show_command(self) -> None:
        argv = self.argv()
        text = visible(cmdbuild.display(argv)) if argv else "This step runs no command."
        self.app.push_screen(MessagePopup("SHOW COMMAND STRING", PRESS_RETURN + "\n\n" + text))

    def action_cancel(self) -> None:
        if self.step == DONE:
            # Back to steps 3-7, ready to run them again (after a failure, say).
            self.step, self.job, self.result = RUN, None, ""
            self.show()
        elif self.step == 0:
            self.leave()
        elif self.job_running():
            self.app.push_screen(MessagePopup(
                "INFORMATION MESSAGE", "Steps 3 to 7 are running: Enter shows them (F3 there stops them, and\n"
                                       "the user file systems are mounted again).\n\n" + PRESS_RETURN))
        else:
            self.step -= 1
            self.result = "" if self.step < RUN else self.result
            self.show()

    def leave(self) -> None:
        if self.ledger_entries() and not self.app.dry_run:
            def answer(ok):
                if ok:
                    self.app.go_back()

            self.app.push_screen(MessagePopup(
                "CANCEL", "User file systems unmounted by aixsmit are still unmounted:\n"
                          + names(e.mount_point for e in self.ledger_entries())
                          + "\n    Press Enter to leave them (aixsmit cmd mount --ledger mounts them).\n"
                            "    Press Cancel to return to the guide."), answer)
        else:
            self.app.go_back()

    def action_exit(self) -> None:
        """F10 says where the guide stands before it leaves."""
        if self.job_running():
            state = ("Steps 3 to 7 are running and go on without this screen; they mount\n"
                     "the user file systems again when they end (Running and Recent Commands).")
        elif self.ledger_entries() and not self.app.dry_run:
            state = ("User file systems are still unmounted: "
                     + names(e.mount_point for e in self.ledger_entries()) + "\n(aixsmit cmd mount --ledger mounts them).")
        elif self.step == DONE or self.step == 0:
            state = ""
        else:
            state = "The guided backup is not finished: no image has been made."
        if not state:
            super().action_exit()
            return

        def answer(ok):
            if ok:
                self.app.exit_smit()

        self.app.push_screen(MessagePopup("EXIT", state + "\n    Press Enter to exit the application.\n"
                                          "    Press Cancel to return to the guide."), answer)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_do()

    def action_do(self) -> None:
        st = STEPS[self.step]
        if st.kind == "info":
            self.advance()
        elif st.kind == "dest":
            dest = self.query_one("#dest", Input).value.strip()
            if not dest:
                self.app.push_screen(MessagePopup("ERROR MESSAGE", '1820-035 A path or file name must be\nspecified in the '
                                                  'entry field for:\n"Backup DEVICE or FILE".\n\n' + PRESS_RETURN))
                return
            try:
                self.dest_facts(dest)
            except AixsmitError as exc:
                self.app.push_screen(MessagePopup("ERROR MESSAGE", f"{exc}\n\n{PRESS_RETURN}"))
                return
            self.dest = dest
            self.advance()
        elif st.kind == "run":
            if self.job is not None:
                if self.job_running() or not self.result:
                    self.follow()  # see it (again)
                else:
                    self.advance()
                return
            if self.result:  # (dry run)
                self.advance()
                return
            argv = self.argv()
            if self.app.dry_run:
                self.result = "dry run"
                self.app.push_screen(MessagePopup("INFORMATION MESSAGE", "(dry run) Steps 3 to 7 would run:\n\n"
                                                  + visible(cmdbuild.display(argv)) + "\n\n" + PRESS_RETURN),
                                     lambda _: self.advance())
                return
            self.app.run_command(self.job_definition(argv), argv, next_label="Summary", on_next=self.go_on)
            screen = self.app.screen
            self.job = getattr(screen, "job", None)
            self.show()
        elif st.kind == "done":
            self.app.open("walkdone")

    def job_definition(self, argv: list[str]) -> ScreenDef:
        return ScreenDef(kind="dialog", id="walkthrough", title=JOB_TITLE, command={self.app.host_name: argv},
                         progress="backup")

    def follow(self) -> None:
        from .screens import CommandStatusScreen

        d = self.job_definition(self.job.argv)
        self.app.push_screen(CommandStatusScreen(d, self.job.argv, progress=True, job=self.job, next_label="Summary",
                                                 on_next=self.go_on))

    def go_on(self) -> None:
        """Enter=Summary on the finished job's COMMAND STATUS."""
        self.continued = True
        self.on_screen_resume()

    def advance(self) -> None:
        if self.step < len(STEPS) - 1:
            self.step += 1
        self.show()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.step != RUN or self.job is None:
            return
        from ..jobs import detached

        info = detached.refresh(self.job)
        if info.status == detached.RUNNING:
            self.show()
            return
        self.result = RESULTS.get(info.status, info.status)
        if self.continued:
            self.continued = False
            self.step = DONE
        self.show()
