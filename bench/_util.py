"""Small helpers shared by the benchmarks: best-of-N wall time of a command or a function."""

from __future__ import annotations

import subprocess
import time


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
