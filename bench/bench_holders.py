"""The holder scan against fuser -m with 1,000 processes running (needs root for the tmpfs).

100 of the 1,000 processes keep their cwd on a tmpfs mounted for the run; both tools must find
exactly those. Timed: the in-process scan, the whole 'aixsmit cmd holders' command, and
'fuser -m MOUNT'.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _util import best_of, command, report  # noqa: E402

N, HOLDING = 1000, 100


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("fuser"):
        print("needs root and fuser (psmisc); skipped")
        return 0
    from aixsmit.fs.table import System

    base = tempfile.mkdtemp()
    mp = os.path.join(base, "mnt")
    os.mkdir(mp)
    subprocess.run(["mount", "-t", "tmpfs", "bench", mp], check=True)
    procs = []
    try:
        for i in range(N):
            cwd = mp if i < HOLDING else "/"
            procs.append(subprocess.Popen(["sleep", "600"], cwd=cwd, start_new_session=True))
        system = System(root="/")
        mount = [m for m in system.all_mounts() if m.path == mp][-1]
        all_mounts = system.all_mounts()
        found = {h.pid for h in system.host.holders([mount], all_mounts)}
        fuser = subprocess.run(["fuser", "-m", mp], capture_output=True, text=True)
        fpids = {int(p) for p in fuser.stdout.split()}
        assert found == fpids and len(found) == HOLDING, (len(found), len(fpids))
        scan = best_of(5, lambda: system.host.holders([mount], all_mounts))
        whole = best_of(5, command([sys.executable, "-m", "aixsmit", "cmd", "holders", mp]))
        ref = best_of(5, command(["fuser", "-m", mp]))
        print(f"{len([p for p in os.listdir('/proc') if p.isdigit()])} processes, {HOLDING} holding the mount")
        report("holder scan (in process)  ", scan, ref, "fuser -m", goal=1.0)
        report("aixsmit cmd holders (whole)", whole, ref, "fuser -m")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait()
        subprocess.run(["umount", mp])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
