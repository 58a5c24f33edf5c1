"""bench/idle_memory.py: the heap of idle sessions, by allocating line."""

import re
import subprocess
import sys

from tests.system.stack import ROOT


def test_it_prints_bytes_per_session_then_the_lines_that_hold_them():
    done = subprocess.run(
        [sys.executable, "-m", "bench.idle_memory", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    lines = done.stdout.splitlines()
    assert re.fullmatch(r"# 5 idle sessions: [\d,]+ bytes per session on the heap", lines[0])
    assert lines[1] == "# bytes  blocks  per session, by the line that allocated them"
    assert len(lines) == 2 + 30
    assert all(re.match(r" *-?\d+ +-?[\d.]+  \S+:\d+  ", line) for line in lines[2:])
