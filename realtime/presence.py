"""Who is in which room right now, across every worker.

With Redis, each room is a hash of `<worker>|<connection>` → `[user_id, username]`, and each
worker keeps a heartbeat key alive (TTL WS_PRESENCE_TTL, renewed three times per TTL). A
worker killed with SIGKILL stops renewing: within WS_PRESENCE_TTL its entries stop counting,
and the next presence query deletes them. Without Redis, presence is this process's memory.
"""

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import defaultdict
from functools import cache

import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger("switchboard.realtime")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
KEY_PREFIX = "switchboard:"

User = tuple[int, str]


def _room_key(channel: str) -> str:
    return f"{KEY_PREFIX}presence:{channel}"


def _worker_key(worker: str) -> str:
    return f"{KEY_PREFIX}worker:{worker}"


def distinct_users(entries) -> list[User]:
    """One (id, username) per user id, by id (a rename mid-subscription keeps one entry)."""
    return sorted(dict(entries).items())


class MemoryPresence:
    """Presence in this process only (the in-memory channel layer reaches no other worker)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, User]] = defaultdict(dict)

    async def add(self, channel: str, member: str, user: User) -> None:
        self.rooms[channel][member] = user

    async def remove(self, channel: str, member: str) -> None:
        room = self.rooms.get(channel)
        if room is not None:
            room.pop(member, None)
            if not room:
                del self.rooms[channel]

    async def users(self, channel: str) -> list[User]:
        return distinct_users(self.rooms.get(channel, {}).values())


class RedisPresence:
    """Presence shared by every worker through Redis, with per-worker heartbeats."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._heartbeat: asyncio.Task | None = None

    def client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = aioredis.from_url(
                self.url,
                socket_timeout=settings.REDIS_CONNECT_TIMEOUT,
                socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            )
        return self._clients[loop]

    async def heartbeat_once(self) -> None:
        await self.client().set(_worker_key(WORKER_ID), "1", ex=settings.WS_PRESENCE_TTL)

    def heartbeat_start(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._heartbeat_run())

    async def _heartbeat_run(self) -> None:
        while True:
            try:
                await self.heartbeat_once()
            except Exception as e:  # Redis down: the layer-health log already says so
                logger.debug("presence heartbeat failed: %s", type(e).__name__)
            await asyncio.sleep(settings.WS_PRESENCE_TTL / 3)

    async def add(self, channel: str, member: str, user: User) -> None:
        self.heartbeat_start()
        await self.heartbeat_once()  # the entry must never be younger than its heartbeat
        await self.client().hset(
            _room_key(channel), f"{WORKER_ID}|{member}", json.dumps(list(user))
        )

    async def remove(self, channel: str, member: str) -> None:
        await self.client().hdel(_room_key(channel), f"{WORKER_ID}|{member}")

    async def users(self, channel: str) -> list[User]:
        client = self.client()
        entries = await client.hgetall(_room_key(channel))
        worker_of = {field: field.decode().split("|", 1)[0] for field in entries}
        workers = sorted(set(worker_of.values()))
        beats = await client.mget([_worker_key(w) for w in workers]) if workers else []
        alive = {worker for worker, beat in zip(workers, beats, strict=True) if beat is not None}
        dead = [field for field, worker in worker_of.items() if worker not in alive]
        if dead:
            await client.hdel(_room_key(channel), *dead)
        return distinct_users(
            tuple(json.loads(value)) for field, value in entries.items() if field not in dead
        )


@cache
def presence() -> MemoryPresence | RedisPresence:
    """This process's presence store, chosen by REDIS_URL."""
    return RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else MemoryPresence()
