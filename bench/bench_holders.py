"""holders with 10,000 processes running, against fuser -m (needs root for the tmpfs).

100 of the 10,000 processes keep their cwd on a tmpfs mounted for the run; both tools must find
exactly those. Timed in turns, as an operator runs them: the whole 'aixsmit cmd holders MOUNT'
command (interpreter start-up included) and 'fuser -m MOUNT'; wall and CPU time. The in-process
scan is shown too (no goal: it is what the command adds to its start-up).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import Usage, in_turns, row, section, steps, summary  # noqa: E402

N, HOLDING = 10_000, 100
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def _sleepers(count: int, cwd: str) -> subprocess.Popen:
    """``count`` sleeping processes started by one shell (forks are cheap from a shell), in a
    process group of their own."""
    return subprocess.Popen(["sh", "-c", f"i=0; while [ $i -lt {count} ]; do sleep 900 & i=$((i+1)); done; wait"],
                            cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL)


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("fuser"):
        print("needs root and fuser (psmisc); skipped")
        return 0
    from aixsmit.fs.table import System

    base = tempfile.mkdtemp()
    mp = os.path.join(base, "mnt")
    os.mkdir(mp)
    subprocess.run(["mount", "-t", "tmpfs", "bench", mp], check=True)
    groups = []
    try:
        before = len([p for p in os.listdir("/proc") if p.isdigit()])
        groups = [_sleepers(HOLDING, mp), _sleepers(N - HOLDING, "/")]
        deadline = time.monotonic() + 120
        while len([p for p in os.listdir("/proc") if p.isdigit()]) < before + N and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        system = System(root="/")
        all_mounts = system.all_mounts()
        mount = [m for m in all_mounts if m.path == mp][-1]
        found = {h.pid for h in system.host.holders([mount], all_mounts)}
        fuser = subprocess.run(["fuser", "-m", mp], capture_output=True, text=True)
        fpids = {int(p) for p in fuser.stdout.split()}
        assert found == fpids and len(found) >= HOLDING, (len(found), len(fpids))
        procs = len([p for p in os.listdir("/proc") if p.isdigit()])
        section("holders", f"holders: {procs} processes, {len(found)} holding the mount; all CPUs free")

        def scan(cpus, env) -> Usage:
            t0, c0 = time.perf_counter(), time.process_time()
            system.host.holders([mount], all_mounts)
            return Usage(time.perf_counter() - t0, time.process_time() - c0)

        t = in_turns(RUNS, {"holders": steps([sys.executable, "-m", "aixsmit", "cmd", "holders", mp]),
                            "fuser": steps(["fuser", "-m", mp]), "scan": scan})
        row("aixsmit cmd holders / fuser -m", t, "holders", "fuser", 1.0, "wall")
        row("  the same in CPU time", t, "holders", "fuser", None, "cpu")
        row("  the scan alone (in process) / fuser -m", t, "scan", "fuser", None, "wall")
        summary()
    finally:
        for g in groups:
            try:
                os.killpg(g.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            g.wait()
        subprocess.run(["umount", mp])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
