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
from ..smit import command as cmdbuild
from ..smit.model import Screen as ScreenDef
from .keys import WALK_KEYS
from .popups import PRESS_RETURN, MessagePopup
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
    Step("Unmount the user file systems", (
        "mksysb saves every mounted file system of rootvg, user ones too - so the guide unmounts the "
        "user file systems first. A file system that a process still uses cannot be unmounted: its "
        "holders are shown below. Stop them, then press F2 to look again. If one of several cannot "
        "be unmounted, the others are mounted again (all or nothing)."), "run"),
    Step("Check that only the system is mounted", (
        "The guide runs mount and reads it: only system file systems may remain. Remote and "
        "virtual file systems (NFS, /proc, ...) are never part of an image and do not count."), "run"),
    Step("Back up the system", (
        "mksysb writes an image of rootvg: image.data (file systems, sizes, devices), then every "
        "file, with owners, permissions, ACLs, extended attributes, links and holes. It writes to a "
        "temporary name and renames it only when complete. Whatever happens, the next step mounts "
        "the user file systems again."), "run", always_next=True),
    Step("Mount the user file systems again", (
        "Everything aixsmit unmounted is recorded in its ledger, with device, type and options, so "
        "it can always be mounted again - also after a crash (aixsmit cmd mount --ledger)."), "run",
        always_next=True),
    Step("Verify the image", (
        "The whole image is read back and checked against the table of contents recorded while it "
        "was made. A damaged or incomplete image fails here, not on the day you need it."), "run"),
    Step("Done", (
        "The system image is made. User data is backed up separately: savevg backs up a user volume "
        "group now, and scheduled backups keep doing both every week and every day. Press Enter "
        "to choose."),
        "done"),
]


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
        self.pending: int | None = None
        self.results: dict[int, str] = {}
        self.backup_started = 0.0
        self.backup_seconds = 0.0
        self.backup_files: int | None = None

    # --- layout --------------------------------------------------------------------------
    def body(self) -> ComposeResult:
        with VerticalScroll(id="body"):
            yield Static("", id="step-title", classes="instructions", markup=False)
            yield Static("", id="why", markup=False)
            with Horizontal(id="dest-row"):
                yield Static("* Backup DEVICE or FILE".ljust(52), classes="label", markup=False)
                yield Static("[", classes="bracket")
                dest = Input("", id="dest")
                dest.cursor_blink = False
                yield dest
                yield Static("]", classes="bracket")
                yield Static(" +/", classes="marker")
            yield Static("", id="facts", markup=False)
            yield Static("", id="command", markup=False)
            yield Static("", id="next", markup=False)

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        st = STEPS[self.step]
        dry = "  (dry run: nothing is changed)" if self.app.dry_run else ""
        self.query_one("#title", Static).update(f"{self.definition.title}: Step {self.step + 1} of {len(STEPS)}")
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
        self.query_one("#command", Static).update(f"Command (F6): {cmdbuild.display(argv)}" if argv else "")
        nxt = {"info": "Press Enter to go on.", "dest": "Type the destination, then press Enter.",
               "run": "Press Enter to do this step.", "done": "Press Enter for volume group backups and schedules, F3 to leave."}
        self.query_one("#next", Static).update("\n" + nxt[st.kind] + "  F3 goes back a step.")

    # --- the facts and commands of each step ---------------------------------------------
    def root_args(self) -> list[str]:
        return ["--root", self.app.root] if self.app.root != "/" else []

    def argv(self) -> list[str]:
        r = self.root_args()
        return {
            2: ["aixsmit", "cmd", "umount", *r, "--all-user"] if self.user_mounts() else [],
            3: ["aixsmit", "cmd", "sysonly", *r],
            4: ["aixsmit", "cmd", "mksysb", *r, "-i", self.dest],
            5: ["aixsmit", "cmd", "mount", *r, "--ledger"] if self.ledger_entries() else [],
            6: ["aixsmit", "cmd", "verify", "-f", self.dest],
        }.get(self.step, [])

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
            rows = [f"  {'MOUNTED OVER':<24} {'DEVICE':<20} {'VFS':<8} CLASS"]
            for e in self.system().table():
                if e.cls != "virtual":
                    rows.append(f"  {e.mount_point:<24} {e.mount.device[:20]:<20} {e.mount.vfs:<8} {e.cls}")
            virtual = sum(1 for e in self.system().table() if e.cls == "virtual")
            rows.append(f"  (and {virtual} virtual file systems: /proc, /sys, ...)")
            return "\n".join(rows)
        if step == 1:
            return self.dest_facts(self.query_one("#dest", Input).value or self.dest)
        if step == 2:
            users = self.user_mounts()
            if not users:
                return "No user file system is mounted: nothing to unmount. Press Enter to go on."
            out = ["User file systems to unmount: " + " ".join(e.mount_point for e in users)]
            holders = self.system().host.holders([e.mount for e in users], self.system().all_mounts())
            if holders:
                from ..fs.unmount import holder_lines

                out.append("BUSY - these processes keep them in use (stop them, then press F2):")
                out += holder_lines(holders, self.system())
            else:
                out.append("No process holds them.")
            return "\n".join(out)
        if step == 3:
            check = self.system().sysonly()
            if check.ok:
                return "Mounted now: only system file systems (" + " ".join(check.system) + ")."
            return "Still mounted user file systems: " + " ".join(check.user) + " (F3 goes back to unmount them)."
        if step == 4:
            return f"The image: {self.dest}"
        if step == 5:
            left = self.ledger_entries()
            if not left:
                return "Nothing is left unmounted."
            return "Unmounted by aixsmit, to mount again: " + " ".join(e.mount_point for e in left)
        if step == 6:
            return f"The image to read back: {self.dest}"
        if step == 7:
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
        lines = [f"Image:       {self.dest}"]
        try:
            st = os.stat(self.dest)
            lines.append(f"Size:        {st.st_size // (1024 * 1024)} MB")
            lines.append(f"Files:       {self.backup_files if self.backup_files is not None else '?'}")
        except OSError:
            lines.append("Size:        (no image)")
        lines.append(f"Backup:      {self.results.get(4, 'not run')} in {int(self.backup_seconds)} s")
        lines.append(f"Mounted:     {self.results.get(5, 'nothing to do')}")
        lines.append(f"Verified:    {self.results.get(6, 'not run')}")
        still = self.ledger_entries()
        if still:
            lines.append("LEFT UNMOUNTED: " + " ".join(e.mount_point for e in still) + " - run: aixsmit cmd mount --ledger")
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
        text = cmdbuild.display(argv) if argv else "This step runs no command."
        self.app.push_screen(MessagePopup("SHOW COMMAND STRING", PRESS_RETURN + "\n\n" + text))

    def action_cancel(self) -> None:
        if self.step == 0 or self.step == len(STEPS) - 1:
            self.leave()
        elif self.step >= 4 and self.ledger_entries():
            self.app.push_screen(MessagePopup(
                "ERROR MESSAGE", "User file systems are still unmounted. Finish the step that mounts them "
                                 "again first.\n\n" + PRESS_RETURN))
        else:
            self.step -= 1
            self.show()

    def leave(self) -> None:
        if self.ledger_entries() and not self.app.dry_run:
            def answer(ok):
                if ok:
                    self.app.go_back()

            self.app.push_screen(MessagePopup(
                "CANCEL", "User file systems unmounted by aixsmit are still unmounted:\n"
                          + " ".join(e.mount_point for e in self.ledger_entries())
                          + "\n    Press Enter to leave them (aixsmit cmd mount --ledger mounts them).\n"
                            "    Press Cancel to return to the guide."), answer)
        else:
            self.app.go_back()

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
            argv = self.argv()
            if not argv:
                self.results[self.step] = "nothing to do"
                self.advance()
                return
            if self.app.dry_run:
                self.results[self.step] = "dry run"
                self.app.push_screen(MessagePopup("INFORMATION MESSAGE", "(dry run) This step would run:\n\n"
                                                  + cmdbuild.display(argv) + "\n\n" + PRESS_RETURN),
                                     lambda _: self.advance())
                return
            self.pending = self.step
            if self.step == 4:
                self.backup_started = time.monotonic()
            d = ScreenDef(kind="dialog", id="walkthrough", title=st.title, command={self.app.host_name: argv},
                          progress="backup" if self.step == 4 else "")
            self.app.run_command(d, argv)
        elif st.kind == "done":
            self.app.open("walkdone")

    def advance(self) -> None:
        if self.step < len(STEPS) - 1:
            self.step += 1
        self.show()

    def on_screen_resume(self) -> None:
        if self.pending is None:
            return
        step, self.pending = self.pending, None
        result = self.app.last_status
        if step == 4:
            self.backup_seconds = time.monotonic() - self.backup_started
            self.backup_files = self.app.last_files
        self.results[step] = {"OK": "OK", "WARN": "OK with warnings", "FAILED": "FAILED"}.get(result or "", "not finished")
        if result in ("OK", "WARN") or STEPS[step].always_next:
            self.step = step + 1
        self.show()
