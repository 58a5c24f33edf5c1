"""Security events survive noise: a failed login stays in SECURITY_LOG_FILE (and in LOG_FILE)
whatever anonymous traffic follows, and Django's 4xx records are rate-limited
(config/log_noise.py), so that traffic cannot rotate LOG_FILE either.
"""

import math
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.system.conftest import http_client, user_register
from tests.system.stack import Worker

NOISE = 10_000  # anonymous 404s
CLIENTS_PER_WORKER = 2  # concurrent keep-alive connections sending them
# Small enough that, unlimited, the 404 records (about 90 bytes each) would fill LOG_FILE and
# its 5 old files: the planted line would be rotated out of all six.
LOG_FILE_MAX_BYTES = 100_000
PER_MINUTE = 10  # LOG_4XX_PER_MINUTE
NOT_FOUND = re.compile(r".* WARNING django\.request \[[^]]+\] Not Found: /nowhere/\d+")


def noise_send(workers: list[Worker]) -> Counter:
    """NOISE anonymous GETs of paths that do not exist, spread over `workers`; how many got
    each status. Threads with keep-alive clients: the cheapest client for a worker to serve."""
    senders = [worker for worker in workers for _ in range(CLIENTS_PER_WORKER)]

    def sender_run(first: int, worker: Worker) -> Counter:
        with httpx.Client(base_url=worker.http, timeout=10, trust_env=False) as client:
            return Counter(
                client.get(f"/nowhere/{n}").status_code for n in range(first, NOISE, len(senders))
            )

    with ThreadPoolExecutor(len(senders)) as pool:
        sent = [pool.submit(sender_run, n, worker) for n, worker in enumerate(senders)]
        return sum((future.result(timeout=180) for future in sent), Counter())


def log_files(path: Path) -> list[Path]:
    """A log file and its rotated copies (path.1 … path.5) that exist."""
    return [p for p in [path, *(Path(f"{path}.{n}") for n in range(1, 6))] if p.exists()]


def test_10000_anonymous_404s_leave_a_planted_failed_login_in_place(start_worker, tmp_path):
    # Two workers writing the same files, as deployed (deploy/systemd/switchboard@.service).
    log_file = tmp_path / "errors.log"
    security_file = tmp_path / "security.log"  # the default: beside LOG_FILE
    workers = [
        start_worker(
            LOG_FILE=str(log_file),
            LOG_FILE_MAX_BYTES=str(LOG_FILE_MAX_BYTES),
            LOG_4XX_PER_MINUTE=str(PER_MINUTE),
        )
        for _ in range(2)
    ]
    victim = user_register(workers[0])["username"]
    with http_client(workers[0]) as client:
        failed = client.post("/api/auth/token/", json={"username": victim, "password": "wrong"})
    assert failed.status_code == 401
    planted = f"login failed: username='{victim}' client=127.0.0.1"
    workers[0].output_wait(planted)

    started = time.monotonic()
    statuses = noise_send(workers)
    elapsed = time.monotonic() - started
    print(f"\n{NOISE} 404s in {elapsed:.1f} s")
    assert statuses == {404: NOISE}

    assert [p.name for p in log_files(log_file)] == [log_file.name]  # never rotated
    log_lines = log_file.read_text().splitlines()
    assert len([line for line in log_lines if planted in line]) == 1
    not_found = [line for line in log_lines if " Not Found: " in line]
    bound = PER_MINUTE * (math.ceil(elapsed / 60) + 1) * len(workers)
    assert 1 <= len(not_found) <= bound, f"{len(not_found)} 404 records written"
    assert [line for line in not_found if not NOT_FOUND.fullmatch(line)] == []
    security_lines = security_file.read_text().splitlines()
    assert len([line for line in security_lines if planted in line]) == 1
    assert [line for line in security_lines if " switchboard.security " not in line] == []
