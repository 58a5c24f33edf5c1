"""Session closes during a database lock, with a real daphne on SQLite or PostgreSQL: the
close is written once the database answers again, and it never counts toward the cap."""

import asyncio
import time
from datetime import UTC, datetime

from tests.system.conftest import user_register
from tests.system.databases import database_locked, database_with_timeout
from tests.system.stack import Worker
from tests.system.test_faults import private_database  # noqa: F401  (a fixture)
from tests.system.test_session_registry_system import registry_closed, registry_rows
from tests.system.wsclient import session_open

LOCK_SECONDS = 4  # longer than AUTH_DB_TIMEOUT (2 s) and the worker's query timeout (1 s)
NOT_RECORDED = "session close not recorded ("  # the old code's log line starts alike
RETRY_MAX = 5  # realtime.registry.closes: the longest wait between two retries


def registry_locked(url: str):
    """Hold a lock that makes every write to the session registry wait (and time out)."""
    return database_locked(url, tables=("realtime_websocketsession",))


def worker_on(start_worker, database: str, **env: str) -> Worker:
    """A worker whose queries give up after 1 s (SQLite's busy timeout, PostgreSQL's
    statement_timeout), so that a write during the lock fails instead of waiting it out."""
    return start_worker(DATABASE_URL=database_with_timeout(database, 1), **env)


async def close_during_lock(worker: Worker, database: str, ws) -> None:
    """Close `ws` while the registry is locked; hold the lock LOCK_SECONDS in all, long
    enough for the worker's write of the close to fail."""
    with registry_locked(database):
        locked = time.monotonic()
        await ws.close()
        await asyncio.to_thread(worker.output_wait, NOT_RECORDED, timeout=LOCK_SECONDS)
        await asyncio.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked)))


async def test_a_close_during_a_database_lock_is_recorded_once_the_database_answers(
    private_database,  # noqa: F811
    start_worker,
):
    worker = worker_on(start_worker, private_database)
    alice = user_register(worker)
    async with session_open(worker, alice["access"]) as (ws, welcome):
        session_id = welcome["session_id"]
        await close_during_lock(worker, private_database, ws)
        released = datetime.now(UTC)

    rows = await registry_closed(worker, [session_id], within=2 * RETRY_MAX)
    recorded_after = datetime.fromisoformat(rows[session_id]["closed_at"]) - released
    recorded_after = recorded_after.total_seconds()

    assert rows[session_id]["close_code"] == 1000
    # Written when the lock went (its time is the write's start: up to the worker's 1 s query
    # timeout earlier, the retry then waiting for the lock).
    assert -1 < recorded_after < RETRY_MAX + 1, recorded_after
    log = worker.log_text()
    assert f"retrying until the database answers: session_id={session_id}" in log
    assert "1 session close(s) recorded on retry" in log
    print(f"close recorded {recorded_after:.2f} s after the lock was released")


async def test_a_session_closed_during_a_database_lock_never_counts_toward_the_cap(
    private_database,  # noqa: F811
    start_worker,
):
    worker = worker_on(start_worker, private_database, WS_MAX_SESSIONS_PER_USER="1")
    alice = user_register(worker)
    async with session_open(worker, alice["access"]) as (first, welcome):
        first_id = welcome["session_id"]
        await close_during_lock(worker, private_database, first)

    # Right after the lock: the only session of a user allowed one is closed.
    async with session_open(worker, alice["access"]) as (_, second):
        second_id = second["session_id"]
        rows = await asyncio.to_thread(registry_rows, worker, [first_id, second_id])

    assert rows[first_id]["close_code"] == 1000
    assert rows[first_id]["closed_at"]
    assert (rows[second_id]["closed_at"], rows[second_id]["close_code"]) == (None, None)
