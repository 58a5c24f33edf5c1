"""The /metrics exposition: every metric the apps define (`accounts/metrics.py`,
`realtime/metrics.py`; their shared helpers in `core/metrics.py`), in Prometheus text.
Each app's ready() imports its metrics module, so all are registered before a first scrape.

Several daphne workers: set PROMETHEUS_MULTIPROC_DIR (an empty directory, wiped before the
workers start) in every worker's environment; any worker's /metrics then serves the sum.
"""

import glob
import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_workers_forget(path: str) -> list[int]:
    """Drop the live gauges of workers that no longer run (SIGKILL leaves no chance to)."""
    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = re.search(r"_(\d+)\.db$", name)
        if match:
            pids.add(int(match.group(1)))
    dead = sorted(pid for pid in pids if not _pid_alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated upstream
    return dead


def metrics_exposition() -> tuple[bytes, str]:
    """The metrics text and its content type: every worker's sum in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    dead_workers_forget(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]  # unannotated upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST
