"""What the benchmarks share: timing a command as a user would (wall time, and CPU time of its
whole process tree), contenders run in turns, medians with their spread, the conditions the
machine is put in (all CPUs free, both contenders on one CPU, a CPU-bound neighbour), and the
row printed with its goal and whether it is met.

Why in turns: the machine is shared. A slow spell then weighs on every contender of a turn
alike, and the ratio of each turn (ours / the reference, in the same turn) is what is reported:
its median over the runs, and its lowest and highest, so the spread is in plain sight.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field


def best_of(n: int, fn) -> float:
    return best_of_each(n, only=fn)["only"]


def best_of_each(n: int, **fns) -> dict[str, float]:
    """Best wall time of each function, run in turns (a, b, c, a, b, c, ...) so a slow spell
    of the machine weighs on all of them alike. A function may return the seconds it measured
    itself (the part of its run that counts)."""
    best = {name: float("inf") for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t = time.perf_counter()
            took = fn()  # a function that times itself returns its own figure
            took = took if isinstance(took, float) else time.perf_counter() - t
            best[name] = min(best[name], took)
    return best


def command(argv: list[str]):
    def go():
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return go


def report(name: str, ours: float, ref: float, ref_name: str, goal: float | None = None) -> None:
    ratio = ours / ref if ref else float("inf")
    verdict = ""
    if goal is not None:
        verdict = "  (goal <= %.2fx: %s)" % (goal, "met" if ratio <= goal else "NOT met")
    print(f"{name}: {ours * 1000:9.1f} ms   {ref_name}: {ref * 1000:9.1f} ms   ratio {ratio:5.2f}x{verdict}")


# --- a command timed as a user would time it ----------------------------------------------

@dataclass
class Usage:
    wall: float = 0.0  # seconds
    cpu: float = 0.0  # user + system seconds of the process and every descendant it waited for
    rss: int = 0  # peak resident set of the largest process of the tree, bytes

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.wall + other.wall, self.cpu + other.cpu, max(self.rss, other.rss))


def run(argv: list[str], cpus: str | None = None, env: dict | None = None, cwd: str | None = None,
        check: bool = True) -> Usage:
    """Run ``argv`` (under ``taskset -c CPUS`` when given) and measure it with wait4: the
    rusage of a process that ended holds its own time and that of every descendant it waited
    for (tar's zstd, mksysb's tars), which is what `time` prints as user + sys."""
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit status {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return Usage(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024)


def steps(*argvs: list[str], before=None):
    """A contender made of commands run one after the other (tar, then sync of its archive);
    ``before()`` runs untimed first (removing the previous run's output)."""
    def go(cpus: str | None, env: dict | None) -> Usage:
        if before is not None:
            before()
        total = Usage()
        for argv in argvs:
            total = total + run(argv, cpus, env)
        return total
    return go


# --- the conditions -------------------------------------------------------------------------

CONDITIONS = {
    "free": "all CPUs free (as free as a shared machine is)",
    "one-cpu": "both contenders pinned to CPU 0 (taskset -c 0)",
    "neighbour": "a CPU-bound neighbour running (one busy loop, not pinned)",
}


@contextlib.contextmanager
def condition(name: str):
    """Yields the CPU list for taskset (or None); with ``neighbour``, a busy loop runs meanwhile."""
    if name != "neighbour":
        yield "0" if name == "one-cpu" else None
        return
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
    try:
        yield None
    finally:
        os.killpg(busy.pid, signal.SIGKILL)
        busy.wait()


# --- contenders in turns, and the row ------------------------------------------------------

@dataclass
class Turns:
    """Each contender's Usage, per turn."""

    runs: dict[str, list[Usage]] = field(default_factory=dict)

    def ratios(self, ours: str, ref: str, what: str) -> list[float]:
        return [getattr(a, what) / max(getattr(b, what), 1e-9) for a, b in zip(self.runs[ours], self.runs[ref])]

    def median(self, name: str, what: str) -> float:
        return statistics.median(getattr(u, what) for u in self.runs[name])


def in_turns(n: int, contenders: dict, cpus: str | None = None, env: dict | None = None) -> Turns:
    """Run every contender ``n`` times, in turns (a, b, a, b, ...)."""
    t = Turns({name: [] for name in contenders})
    for _ in range(n):
        for name, go in contenders.items():
            t.runs[name].append(go(cpus, env))
    return t


RESULTS: list[tuple[str, bool | None]] = []
_section = [""]


def section(short: str, title: str) -> None:
    """Start a group of rows: ``title`` is printed, ``short`` names its rows in the summary."""
    _section[0] = short
    print(f" {title}", flush=True)


def row(label: str, turns: Turns, ours: str, ref: str, goal: float | None, what: str = "wall") -> None:
    """One printed row: the median of each contender, the median per-turn ratio and its range,
    the goal and met / MISSED."""
    r = turns.ratios(ours, ref, what)
    med = statistics.median(r)
    unit = "s wall" if what == "wall" else "s CPU"
    verdict = ""
    met = None
    if goal is not None:
        met = med <= goal
        verdict = f"  goal <= {goal:.2f}x: {'met' if met else 'MISSED'}"
    print(f"  {label:<44} {turns.median(ours, what):8.2f} vs {turns.median(ref, what):8.2f} {unit:<6} "
          f"ratio {med:5.2f}x ({min(r):.2f}-{max(r):.2f}, {len(r)} runs){verdict}", flush=True)
    RESULTS.append((f"{_section[0]}: {label.strip()}", met))


def line(label: str, value: str, goal: str = "", met: bool | None = None) -> None:
    verdict = f"  goal {goal}: {'met' if met else 'MISSED'}" if goal else ""
    print(f"  {label:<44} {value}{verdict}", flush=True)
    if goal:
        RESULTS.append((f"{_section[0]}: {label.strip()}", met))


def summary() -> None:
    goals = [m for _, m in RESULTS if m is not None]
    missed = [label for label, m in RESULTS if m is False]
    print(f"  -- {len(goals) - len(missed)} of {len(goals)} goals met" + (":" if missed else ""))
    for label in missed:
        print(f"     missed: {label}")
