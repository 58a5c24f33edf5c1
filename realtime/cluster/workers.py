"""Which daphne workers are alive, told by heartbeats in Redis rather than by the workers.

Each worker holding sessions keeps `switchboard:worker:<id>` alive (TTL WS_PRESENCE_TTL,
renewed three times per TTL) and lists its id in the set `switchboard:workers`. A worker
killed with SIGKILL stops renewing: within WS_PRESENCE_TTL seconds its key expires, and its
sessions and presence entries stop counting, with no request to that worker. Redis keeps
the TTL, so the workers' clocks never need to agree. Without REDIS_URL there is one worker:
this process.

The key's value is the worker's channel-layer fingerprint (`config.redis_topology`): workers
that shard the layer differently would each look for a channel on a different server, so a
worker that finds another alive with a different fingerprint says so (an error in the log,
`switchboard_layer_config_mismatch`), and `check --deploy` fails (switchboard.E007).
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import datetime

import redis.asyncio as aioredis
from django.conf import settings
from django.utils import timezone

from core.redis import redis_clients, text
from realtime.metrics import LAYER_CONFIG_MISMATCH

logger = logging.getLogger("switchboard.realtime")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
KEY_PREFIX = "switchboard:"
WORKERS_KEY = f"{KEY_PREFIX}workers"


def worker_key(worker: str) -> str:
    return f"{KEY_PREFIX}worker:{worker}"


def alive_of(workers: list[str], beats: list[bytes | str | None]) -> set[str]:
    """The workers whose heartbeat key still exists (`beats` is MGET's answer, in order)."""
    return {worker for worker, beat in zip(workers, beats, strict=True) if beat is not None}


def layer_fingerprint() -> str:
    """This worker's channel-layer fingerprint: what its heartbeat says."""
    fingerprint: str = settings.REDIS_TOPOLOGY.layer_fingerprint()
    return fingerprint


def fingerprints_of(workers: list[str], beats: list[bytes | str | None]) -> dict[str, str]:
    """Each alive worker's layer fingerprint (a heartbeat of "1": a worker from before
    fingerprints, counted as unknown)."""
    return {
        worker: text(beat)
        for worker, beat in zip(workers, beats, strict=True)
        if beat is not None and text(beat) != "1"
    }


def mismatched_workers(fingerprints: dict[str, str]) -> list[str]:
    """The other workers whose channel layer differs from this worker's."""
    mine = layer_fingerprint()
    return sorted(w for w, theirs in fingerprints.items() if w != WORKER_ID and theirs != mine)


class WorkerHeartbeat:
    """This worker's heartbeat, and the alive-worker queries, on one Redis per event loop
    (held by the hub, `realtime.hub`)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._alive: tuple[float, frozenset[str], datetime] | None = None  # the last read
        self.beating = False
        self.fingerprint = layer_fingerprint()
        self.mismatch_reported = False

    def client(self) -> aioredis.Redis:
        """The running loop's Redis client (`core.redis`)."""
        return redis_clients().async_client()

    async def beat(self) -> None:
        """Renew this worker's key and make sure the worker set lists it."""
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.set(worker_key(WORKER_ID), self.fingerprint, ex=settings.WS_PRESENCE_TTL)
            pipe.sadd(WORKERS_KEY, WORKER_ID)
            await pipe.execute()
        if not self.beating:
            await self.layer_agreement_check()
        self.beating = True

    async def layer_agreement_check(self) -> None:
        """Compare this worker's channel layer with every alive worker's; an error in the log
        and the mismatch gauge when one differs (once until they agree again)."""
        client = self.client()
        workers = sorted(text(member) for member in await client.smembers(WORKERS_KEY))
        beats = await client.mget([worker_key(w) for w in workers]) if workers else []
        others = mismatched_workers(fingerprints_of(workers, beats))
        LAYER_CONFIG_MISMATCH.set(len(others))
        if others and not self.mismatch_reported:
            logger.error(
                "channel layer: %d other worker(s) use a different REDIS_LAYER_URLS (or Redis) "
                "than this one (%s): messages between them are lost. Give every worker the "
                "same REDIS_LAYER_URLS, in the same order.",
                len(others),
                ", ".join(others[:5]),
            )
        self.mismatch_reported = bool(others)

    async def ensure(self) -> None:
        """Start beating (the first beat before returning, so nothing this worker records is
        ever younger than its heartbeat); raises when Redis cannot be reached."""
        if self._task is None or self._task.done():
            # The loop first: connects racing in here must not start a second one.
            self._task = asyncio.get_running_loop().create_task(self._run())
        if not self.beating:
            await self.beat()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The task this runs (the beat), for the hub to cancel when it closes."""
        return [self._task] if self._task is not None else []

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_PRESENCE_TTL / 3)
            try:
                await self.beat()
                await self.layer_agreement_check()
            except Exception as e:  # Redis down: the layer-health log already says so
                self.beating = False
                logger.debug("worker heartbeat failed: %s", type(e).__name__)

    async def alive(self, workers: list[str]) -> set[str]:
        """Which of `workers` are alive."""
        if not workers:
            return set()
        return alive_of(workers, await self.client().mget([worker_key(w) for w in workers]))

    async def alive_recent(self, max_age: float) -> tuple[frozenset[str], datetime]:
        """Every alive worker as read at most `max_age` seconds ago (the handshakes of one
        moment share one read), and when that read began."""
        now = time.monotonic()
        if self._alive is not None and now - self._alive[0] <= max_age:
            return self._alive[1], self._alive[2]
        began = timezone.now()
        alive = frozenset(await self.alive_all())
        self._alive = (now, alive, began)
        return alive, began

    async def alive_all(self) -> set[str]:
        """Every alive worker; dead ones are dropped from the worker set on the way."""
        client = self.client()
        workers = sorted(text(member) for member in await client.smembers(WORKERS_KEY))
        alive = await self.alive(workers)
        dead = [worker for worker in workers if worker not in alive]
        if dead:
            await client.srem(WORKERS_KEY, *dead)
        return alive


class LocalWorkers:
    """No Redis: this process is the only worker, alive while it runs."""

    async def beat(self) -> None:
        return None

    async def ensure(self) -> None:
        return None

    async def alive(self, workers: list[str]) -> set[str]:
        return {WORKER_ID} & set(workers)

    async def alive_all(self) -> set[str]:
        return {WORKER_ID}

    async def alive_recent(self, max_age: float) -> tuple[frozenset[str], datetime]:
        return frozenset({WORKER_ID}), timezone.now()

    def tasks(self) -> list[asyncio.Task[None]]:
        return []


def layer_fingerprints_sync() -> dict[str, str]:
    """Every alive worker's channel-layer fingerprint, for `check --deploy`."""
    client = redis_clients().sync_client()
    workers = sorted(text(member) for member in client.smembers(WORKERS_KEY))
    return (
        fingerprints_of(workers, client.mget([worker_key(w) for w in workers])) if workers else {}
    )


def alive_workers_sync() -> set[str]:
    """Every alive worker, for sync code (admin, REST, commands). Without Redis, this
    process: right for the admin and REST API served by the one worker, not for a command."""
    if not settings.REDIS_URL:
        return {WORKER_ID}
    client = redis_clients().sync_client()
    workers = sorted(text(member) for member in client.smembers(WORKERS_KEY))
    if not workers:
        return set()
    return alive_of(workers, client.mget([worker_key(w) for w in workers]))


def worker_retire_sync() -> None:
    """Forget this worker at once (graceful shutdown): its sessions stop counting now."""
    if not settings.REDIS_URL:
        return
    with redis_clients().sync_client().pipeline(transaction=True) as pipe:
        pipe.delete(worker_key(WORKER_ID))
        pipe.srem(WORKERS_KEY, WORKER_ID)
        pipe.execute()


def dead_workers_knowable_sync() -> bool:
    """Whether a worker missing from the heartbeats is surely dead: there is Redis, and it
    has been up for two heartbeat TTLs (after a restart, live workers need one beat)."""
    if not settings.REDIS_URL:
        return False
    uptime = redis_clients().sync_client().info("server")["uptime_in_seconds"]
    return bool(int(uptime) >= 2 * settings.WS_PRESENCE_TTL)
