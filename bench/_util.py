"""Small helpers shared by the benchmarks: best-of-N wall time of a command or a function."""

from __future__ import annotations

import subprocess
import time


def best_of(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
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
