"""A worker's shutdown, shared by every server: daphne's SIGTERM hook
(`realtime.server.daphne_adapter`, blocking, in a thread) and the ASGI lifespan
(`realtime.server.lifespan`, on the event loop), for uvicorn and granian.

In order: close the sessions still open with 1001 and their reason (the lifespan only: daphne's
adapter has closed its sockets before its hooks run), stop the hub's background tasks (so that
no heartbeat in flight re-registers the worker), record this worker's sessions closed and drop
its heartbeat, then close the database and Redis pools (a pool thread left waiting would keep
the process alive after the server is done).
"""

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import close_old_connections, connections

from realtime.cluster.workers import WORKER_ID, worker_retire_sync
from realtime.hub import hub
from realtime.protocol.codes import CloseCode
from realtime.registry.services import worker_sessions_close
from realtime.session.state import SessionEnd

logger = logging.getLogger("switchboard.realtime")

SESSIONS_CLOSE_WAIT = 5.0  # seconds the lifespan waits for the 1001 closes to be sent
# Seconds the whole lifespan shutdown may take: with the servers' graceful wait
# (deploy/servers.py, 10 s) it stays under the systemd units' TimeoutStopSec (20 s).
SHUTDOWN_BUDGET = 8.0


def worker_retire() -> None:
    """Record this worker's sessions closed (1001) and drop its heartbeat, so that nothing
    is left online; each step is tried even when the other fails."""
    try:
        close_old_connections()
        closed = worker_sessions_close(worker=WORKER_ID, code=int(CloseCode.GOING_AWAY))
        logger.warning(
            "shutting down: %d session(s) recorded closed with %d", closed, CloseCode.GOING_AWAY
        )
    except Exception:
        logger.exception("shutting down: could not record this worker's sessions closed")
    finally:
        connections.close_all()
    try:
        worker_retire_sync()
    except Exception:
        logger.exception("shutting down: could not drop this worker's heartbeat")


def database_pools_close() -> None:
    """Close each database's connection pool (psycopg's, `DATABASES[...]["OPTIONS"]["pool"]`):
    its worker threads end, so that the process can exit."""
    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is None:
            continue
        try:
            close_pool()
        except Exception:
            logger.exception("shutting down: could not close the %s pool", connection.alias)


def worker_stop() -> None:
    """daphne's shutdown hook, run once its sockets are closed with 1001: the same steps as
    the lifespan's, from a thread."""
    hub().close()
    worker_retire_and_close_pools()


async def sessions_close_going_away() -> int:
    """Close every session still open on this worker with 1001 "server going away" (each
    records its own close); how many there were."""
    sessions: list[Any] = list(hub().health.sessions)
    closes = [
        session.end(SessionEnd("shutting down", CloseCode.GOING_AWAY)) for session in sessions
    ]
    if closes:
        done = asyncio.gather(*closes, return_exceptions=True)
        try:
            results = await asyncio.wait_for(done, timeout=SESSIONS_CLOSE_WAIT)
        except TimeoutError:
            logger.warning(
                "shutting down: some sessions did not close within %.0f s", SESSIONS_CLOSE_WAIT
            )
        else:
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                logger.warning(
                    "shutting down: %d session(s) could not be closed (%s)",
                    len(failed),
                    type(failed[0]).__name__,
                )
    return len(sessions)


async def layers_close() -> None:
    """Close the channel layers' Redis pools of the running loop."""
    for alias in list(channel_layers.backends):
        close_pools = getattr(channel_layers.backends[alias], "close_pools", None)
        if close_pools is not None:
            try:
                await close_pools()
            except Exception:
                logger.exception("shutting down: could not close channel layer %s", alias)


async def shutdown_step(what: str, step: Awaitable[object]) -> None:
    """Run one step of the lifespan's shutdown; a failure is logged and the next step runs."""
    try:
        await step
    except Exception:
        logger.exception("shutting down: could not %s", what)


def worker_retire_and_close_pools() -> None:
    """`worker_retire`, then the database pools closed, on one thread: Django's connections
    are per thread, so only the thread that used them sees them."""
    worker_retire()
    database_pools_close()


async def worker_ashutdown() -> None:
    """The lifespan's shutdown (uvicorn and granian), each step tried whatever the one before
    did, all of it within SHUTDOWN_BUDGET seconds (a server that waits for it forever would
    outlast the process manager's stop timeout and be killed half-way)."""
    try:
        await asyncio.wait_for(worker_ashutdown_steps(), timeout=SHUTDOWN_BUDGET)
    except TimeoutError:
        logger.error("shutting down: not done within %.0f s, stopping anyway", SHUTDOWN_BUDGET)


async def worker_ashutdown_steps() -> None:
    await shutdown_step("close the open sessions", sessions_close_going_away_logged())
    await shutdown_step("stop the worker's tasks", hub().aclose())
    retire = sync_to_async(worker_retire_and_close_pools, thread_sensitive=False)
    await shutdown_step("retire the worker", retire())
    await shutdown_step("close the channel layers", layers_close())
    await shutdown_step("close the Redis pools", hub().redis.aclose())


async def sessions_close_going_away_logged() -> None:
    closed = await sessions_close_going_away()
    logger.warning("shutting down: closed %d session(s) with %d", closed, CloseCode.GOING_AWAY)
