"""The machine's two cores as the benchmarks use them: the server on one, the load generator
on the other; a quiet machine before each measured window; CPU time of a process tree.

Linux only (`taskset`, /proc).
"""

import os
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

SERVER_CORE = 0
CLIENT_CORE = 1


def pinned(command: list[str], core: int) -> list[str]:
    """`command` run on `core` only (`taskset` execs it: the PID stays the program's)."""
    return ["taskset", "-c", str(core), *command]


def client_pin() -> None:
    """This process, and every process it starts from now on, on the client's core."""
    os.sched_setaffinity(0, {CLIENT_CORE})


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone since the listing
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of `pids` so far (a process gone since counts nothing)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _core_times(cores: tuple[int, ...]) -> tuple[int, int]:
    """(idle, total) jiffies of `cores` so far, from /proc/stat."""
    idle = total = 0
    names = {f"cpu{core}" for core in cores}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in names:
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            idle += ticks[3] + ticks[4]
            total += sum(ticks)
    return idle, total


@dataclass(frozen=True)
class Quiet:
    """How long to wait for a quiet machine: idle above `idle_above` (a fraction) on both
    cores for `for_s` seconds running, waiting at most `timeout_s`."""

    idle_above: float = 0.9
    for_s: float = 1.0
    timeout_s: float = 10.0
    sample_s: float = 0.2


def quiet_wait(
    quiet: Quiet, label: str, cores: tuple[int, ...] = (SERVER_CORE, CLIENT_CORE)
) -> dict:
    """Wait until `cores` have been idle for `quiet.for_s`, or `quiet.timeout_s` passed;
    logs the outcome on stderr and returns it: {"waited_s", "quiet", "idle"} (the idle
    fraction of the last `for_s`)."""
    started = time.monotonic()
    samples = [_core_times(cores)]
    needed = max(1, round(quiet.for_s / quiet.sample_s))  # intervals in a row, all idle
    outcome, idle = False, 0.0
    while not outcome and time.monotonic() - started < quiet.timeout_s:
        time.sleep(quiet.sample_s)
        samples = [*samples, _core_times(cores)][-(needed + 1) :]
        fractions = [(b[0] - a[0]) / max(1, b[1] - a[1]) for a, b in pairwise(samples)]
        idle = (samples[-1][0] - samples[0][0]) / max(1, samples[-1][1] - samples[0][1])
        outcome = len(fractions) == needed and min(fractions) >= quiet.idle_above
    waited = round(time.monotonic() - started, 1)
    state = "quiet" if outcome else f"NOT quiet after {quiet.timeout_s} s"
    print(f"[bench] {label}: {state} (idle {idle:.0%}, waited {waited} s)", file=sys.stderr)
    return {"waited_s": waited, "quiet": outcome, "idle": round(idle, 3)}
