"""Readiness checks: can this worker reach its database and its channel layer right now?"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.db import connection, connections

CHECK_TIMEOUT = 1.0
# Probes that hang (a locked database) pile up here, not in the loop's default executor.
_PROBES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def _database_ping() -> None:
    """Read one row of a real table (`SELECT 1` alone takes no lock, so it would pass on a
    locked SQLite file); on this thread's own connection, which is closed afterwards."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM django_migrations LIMIT 1")
    finally:
        connections.close_all()


async def database_check() -> None:
    """Raise unless a query succeeds within CHECK_TIMEOUT (in its own thread, never blocking
    the thread that serves Django's sync views)."""
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(_PROBES, _database_ping), timeout=CHECK_TIMEOUT)


async def channel_layer_check() -> None:
    """Raise unless a message sent to a fresh channel comes back within CHECK_TIMEOUT."""

    async def round_trip() -> None:
        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer is configured")
        # The default prefix: the worker's one receive loop (held by any open session)
        # pops that key for every local channel; another prefix would never be read.
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "readyz.check"})
        message = await layer.receive(channel)
        if message.get("type") != "readyz.check":
            raise RuntimeError("channel layer returned a different message")

    await asyncio.wait_for(round_trip(), timeout=CHECK_TIMEOUT)


CHECKS = {"database": database_check, "channel_layer": channel_layer_check}


def shards_down() -> str | None:
    """With a sharded layer, which shards this worker cannot reach ("ok" when none): told,
    not required, since what lives on the other shards is served (None with one Redis)."""
    from realtime.cluster.health import ring_size, shard_name
    from realtime.hub import hub

    if ring_size() == 1:
        return None
    down = sorted(hub().health.down)
    if not down:
        return "ok"
    return "down: " + ", ".join(shard_name(shard) for shard in down)


async def readiness() -> dict[str, str]:
    """Run every check concurrently: {"database": "ok" | "<error>", "channel_layer": …};
    with a sharded layer, "channel_layer_shards" too (not part of the verdict)."""
    results = await asyncio.gather(*(check() for check in CHECKS.values()), return_exceptions=True)
    answers = {
        name: "ok" if result is None else _describe(result)
        for name, result in zip(CHECKS, results, strict=True)
    }
    shards = shards_down()
    return answers if shards is None else {**answers, "channel_layer_shards": shards}


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"timeout after {CHECK_TIMEOUT:g} s"
    return f"error: {type(error).__name__}"
