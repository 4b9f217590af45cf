"""The unmount ledger: one record per unmount, so that every file system aixsmit takes away can
be given back exactly as it was, also after a crash, a reboot or a new loop device number.

Each record is its own file, ``STATE/ledger/ID.json``, written to a temporary name, synced and
renamed before the unmount it records; forgetting it is one ``unlink``, which needs no free
space. A record says who wrote it (``run``, ``pid``), when and in which order (``seq``,
``order``), what was mounted (source, type, FSROOT, the per-mount *and* the super-block
options, as ``findmnt -o OPTIONS`` shows them), what lay below it at the same path (``below``:
the stack), and a stable identity of the file system (:class:`Identity`: its UUID, and a loop device's
backing file and offset), so that it is recognised after a reboot, on another loop number or
another device name. The stack below is recorded with the same :class:`Identity`: there is one
notion of "the same file system", :meth:`aixsmit.host.linux.LinuxHost.holds`.

Only a process holding :func:`aixsmit.state.mount_lock` changes the ledger, and a process
removes only records it wrote, except ``mount --ledger``, whose job is to settle them all.

Test hook: :func:`checkpoint` stops the process (SIGSTOP) at a named step when the environment
variable ``AIXSMIT_TEST_STOP_AT`` names it (``umount`` or ``umount:2`` for its second time), so a
test can break the state directory or SIGKILL the process exactly there. Unset (as always in
production) it does nothing.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace

from ..errors import AixsmitError
from ..safefile import STATE_FILE_LIMIT, make_private_dirs, read_bounded, write_file
from ..state import LockBusy, atomic_write_json, check_lock, lock_held, state_path
from .mounts import merge_options, natural_root  # noqa: F401  (also this module's names)

LEDGER_DIR = "ledger"
LEGACY_NAME = "unmounted.json"  # the version-1 ledger: one file, one entry per path


class LedgerError(AixsmitError):
    """A record could not be written, read or removed; the message names the file and why."""


_counts: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """Test hook (see the module's docstring); inert unless AIXSMIT_TEST_STOP_AT is set."""
    want = os.environ.get("AIXSMIT_TEST_STOP_AT")
    if not want:
        return
    n = _counts[name] = _counts.get(name, 0) + 1
    if want in (name, f"{name}:{n}"):
        os.kill(os.getpid(), signal.SIGSTOP)


@dataclass(frozen=True)
class Identity:
    """Which file system a mount mounts, stable across reboots, loop numbers and device names.

    ``uuid``: the file system's UUID (blkid), wherever it has one. ``backing_file`` and
    ``offset``: a loop device's file (the UUID says which file system, the file where it lies: a
    copy of the image elsewhere is another one). ``source``: only for what has neither (tmpfs,
    server:/export, an overlay), the mount table's source. A device name (/dev/sdb1,
    /dev/loop3) is never part of it: it changes on the next boot or attach."""

    uuid: str = ""
    backing_file: str = ""
    offset: int = 0
    source: str = ""

    @classmethod
    def of(cls, facts: dict, source: str) -> "Identity":
        """From a host's ``device_facts`` of a mount whose mount-table source is ``source``."""
        uuid, backing = facts.get("uuid", ""), facts.get("backing_file", "")
        return cls(uuid=uuid, backing_file=backing, offset=facts.get("offset", 0) if backing else 0,
                   source="" if uuid or backing else source)

    @classmethod
    def from_json(cls, value) -> "Identity":
        """A stored identity: a dict of the fields, or (records written before there was one
        identity) a ``file@offset`` string for a loop device, or a device name."""
        if isinstance(value, dict):
            return cls(uuid=str(value.get("uuid", "")), backing_file=str(value.get("backing_file", "")),
                       offset=int(value.get("offset", 0)), source=str(value.get("source", "")))
        text = str(value)
        path, at, offset = text.rpartition("@")
        if at and path.startswith("/") and offset.isdigit():
            return cls(backing_file=path, offset=int(offset))
        return cls(source=text)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v}

    def __str__(self) -> str:
        """For messages: the loop file (and offset), else UUID=…, else the source."""
        if self.backing_file:
            return self.backing_file + (f" (offset {self.offset})" if self.offset else "")
        return f"UUID={self.uuid}" if self.uuid else self.source


@dataclass(frozen=True)
class Record:
    """One unmount. ``path`` is the host path; ``mount_point`` as the operator named it."""

    mount_point: str
    path: str
    root: str
    source: str  # mountinfo's source: /dev/loop3, /dev/sdb1, server:/x
    vfs: str
    fs_root: str = "/"
    vfs_options: tuple[str, ...] = ()
    fs_options: tuple[str, ...] = ()
    host: str = "linux"
    uuid: str = ""
    backing_file: str = ""  # a loop device's file
    offset: int = 0
    sizelimit: int = 0
    autoclear: bool = False  # the loop device detaches itself on unmount (mount -o loop)
    detach_loop: bool = False  # aixsmit detaches the loop device after the unmount
    propagation: str = ""  # as findmnt -o PROPAGATION: shared, private, private,slave, ...
    below: tuple[tuple[str, Identity, str], ...] = ()  # (vfs, identity, fs_root) under it at path
    id: str = ""
    run: str = ""
    pid: int = 0
    seq: int = 0  # time.time_ns() when written: the ledger's order across runs
    order: int = 0  # place in its run's unmount order
    unmounted_at: str = ""
    legacy: bool = field(default=False, compare=False)

    @property
    def device(self) -> str:
        return self.source

    @property
    def identity(self) -> Identity:
        return Identity(uuid=self.uuid, backing_file=self.backing_file, offset=self.offset if self.backing_file else 0,
                        source="" if self.uuid or self.backing_file else self.source)

    @property
    def options(self) -> tuple[str, ...]:
        return merge_options(self.vfs_options, self.fs_options)

    @property
    def is_bind(self) -> bool:
        return self.fs_root != natural_root(self.vfs, self.fs_options)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("legacy")
        d["below"] = [[vfs, ident.to_json(), fs_root] for vfs, ident, fs_root in self.below]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Record":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "legacy"}
        for k in ("vfs_options", "fs_options"):
            known[k] = tuple(known.get(k, ()))
        known["below"] = tuple((str(vfs), Identity.from_json(ident), str(fs_root))
                               for vfs, ident, fs_root in known.get("below", ()))
        return cls(**known)


class Ledger:
    """The records in ``STATE/ledger`` (``directory`` overrides the state directory)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.state = os.fspath(directory) if directory else state_path()
        self.dir = os.path.join(self.state, LEDGER_DIR)

    # --- reading -------------------------------------------------------------------------
    def scan(self) -> tuple[list[Record], list[str]]:
        """(records oldest first, one line per record file that cannot be read)."""
        records: list[Record] = []
        problems: list[str] = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            names = []
        except OSError as exc:
            raise LedgerError(f"aixsmit: the ledger {self.dir} cannot be read: {exc.strerror}.")
        for n in names:
            path = os.path.join(self.dir, n)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as f:
                    records.append(Record.from_json(json.loads(f.read(1 << 20))))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError) as exc:
                problems.append(f"aixsmit: ledger record {path} cannot be read: {getattr(exc, 'strerror', None) or exc}.")
        records += self._legacy(problems)
        records.sort(key=lambda r: (r.seq, r.order))
        return records, problems

    def entries(self) -> list[Record]:
        records, problems = self.scan()
        if problems:
            raise LedgerError(problems[0])
        return records

    def under(self, root: str) -> list[Record]:
        root = root.rstrip("/") or "/"
        return [e for e in self.entries() if root == "/" or e.path == root or e.path.startswith(root + "/")]

    def _legacy(self, problems: list[str]) -> list[Record]:
        path = os.path.join(self.state, LEGACY_NAME)
        try:
            data = json.loads(read_bounded(path, STATE_FILE_LIMIT, "unmount ledger"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AixsmitError) as exc:
            problems.append(f"aixsmit: {exc}." if isinstance(exc, AixsmitError) else
                            f"aixsmit: {path}: the unmount ledger cannot be read: {exc}.")
            return []
        out = []
        for i, d in enumerate(data.get("entries", [])):
            out.append(Record(mount_point=d["mount_point"], path=d["path"], root=d.get("root", "/"),
                              source=d.get("device", ""), vfs=d.get("vfs", ""),
                              vfs_options=tuple(d.get("options", ())), host=d.get("host", "linux"),
                              uuid=d.get("uuid", ""), backing_file=d.get("backing_file", ""),
                              id=f"v1-{i}", order=-i, legacy=True))
        return out

    # --- changing --------------------------------------------------------------------------
    def _need_lock(self) -> None:
        if not lock_held():
            raise LockBusy("aixsmit: the ledger is changed only under the mount lock.")
        check_lock()

    def record_path(self, rec: Record) -> str:
        return os.path.join(self.dir, f"{rec.id}.json")

    def add(self, rec: Record) -> None:
        """Write ``rec`` durably (:func:`aixsmit.safefile.write_file`: a new file, fsync,
        rename, fsync of the directory). Raises :class:`LedgerError` naming the file and the
        reason (full, read-only, removed)."""
        self._need_lock()
        data = (json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n").encode("utf-8", "surrogateescape")
        try:
            make_private_dirs(self.dir)
            write_file(self.record_path(rec), data)
        except (OSError, AixsmitError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise LedgerError(f"aixsmit: cannot record the unmount of {rec.mount_point} in the ledger "
                              f"{self.dir}: {why}.") from None

    def has(self, rec: Record) -> bool:
        return rec.legacy or os.path.exists(self.record_path(rec))

    def ensure(self, records: list[Record]) -> None:
        """Write again any of ``records`` whose file has gone (the state directory removed
        under a running process). Raises :class:`LedgerError` when that fails."""
        state_path()  # recreated 0700 and checked, if it was removed
        check_lock()  # and the lock taken again on its new mount.lock (or LockBusy)
        for rec in records:
            if not self.has(rec):
                self.add(rec)

    def forget(self, rec: Record) -> None:
        """Remove ``rec`` (gone already is fine). Raises :class:`LedgerError` naming why not."""
        if not rec.id:
            return
        self._need_lock()
        if rec.legacy:
            return self._forget_legacy(rec)
        try:
            os.unlink(self.record_path(rec))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise LedgerError(f"aixsmit: the ledger record {self.record_path(rec)} of {rec.mount_point} cannot be "
                              f"removed: {exc.strerror}.") from None

    def _forget_legacy(self, rec: Record) -> None:
        path = os.path.join(self.state, LEGACY_NAME)
        try:
            data = json.loads(read_bounded(path, STATE_FILE_LIMIT, "unmount ledger"))
            entries = [d for d in data.get("entries", []) if d.get("path") != rec.path]
            if entries:
                atomic_write_json(path, {"version": 1, "entries": entries})
            else:
                os.unlink(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError, AixsmitError) as exc:
            raise LedgerError(f"aixsmit: {path}: the entry of {rec.mount_point} cannot be removed: {exc}.") from None


def new_run_id() -> str:
    return f"{os.getpid()}-{time.time_ns()}"


def stamp(rec: Record, run: str, order: int) -> Record:
    """``rec`` as written by run ``run`` as its ``order``-th unmount."""
    seq = time.time_ns()
    return replace(rec, id=f"{seq}-{os.getpid()}-{order}", run=run, pid=os.getpid(), seq=seq, order=order,
                   unmounted_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
