"""Who is in which room right now, across every worker.

With Redis, each room is a hash of `<worker>|<connection>` → `[user_id, username]`. A worker
killed with SIGKILL stops its heartbeat (`realtime.cluster.workers`): within WS_PRESENCE_TTL its
entries stop counting, and the next presence query deletes them. Without Redis, presence is
this process's memory.

A worker that only stalled past WS_PRESENCE_TTL (SIGSTOP, a long pause) looks just as dead,
and loses its entries the same way, while its sessions live on. So each worker keeps a
marker key, renewed every WS_PRESENCE_TTL / 3 seconds, that whoever deletes its entries
deletes too: a worker that finds its marker gone (deleted, expired, or Redis restarted)
writes every entry it holds again, as the room fan-out puts its channel back in its rooms.

Presence lives in REDIS_URL's Redis, not on the channel layer (which REDIS_LAYER_URLS may
shard elsewhere), so a leave never waits for the layer. One that this Redis cannot take is
kept, and the marker watcher deletes it on its next round; until then, later leaves wait
with it instead of each waiting for a timeout.
"""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings

from core.redis import redis_error_reason, text
from realtime.cluster.workers import KEY_PREFIX, WORKER_ID, WorkerHeartbeat

logger = logging.getLogger("switchboard.realtime")

User = tuple[int, str]
MARKER_TTLS = 10  # the marker outlives this many WS_PRESENCE_TTLs without a renewal


def _room_key(channel: str) -> str:
    return f"{KEY_PREFIX}presence:{channel}"


def marker_key(worker: str) -> str:
    """Exists while every presence entry of `worker` is in Redis."""
    return f"{KEY_PREFIX}presence-worker:{worker}"


def distinct_users(entries: Iterable[User]) -> list[User]:
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

    def tasks(self) -> list[asyncio.Task[None]]:
        return []


class RedisPresence:
    """Presence shared by every worker through Redis; entries of dead workers (no heartbeat,
    see `realtime.cluster.workers`) stop counting and are deleted by the next query. This worker's
    entries are also kept here, to be written again when another worker deleted them."""

    def __init__(self, workers: WorkerHeartbeat) -> None:
        self.workers = workers
        self.entries: dict[tuple[str, str], User] = {}  # (room, member) → user, this worker's
        self.removals: set[tuple[str, str]] = set()  # this worker's left entries Redis kept
        self._watchers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self.marked = False  # the marker was set once: a missing one means entries were lost

    async def add(self, channel: str, member: str, user: User) -> None:
        self.entries[(channel, member)] = user
        self.removals.discard((channel, member))  # left and joined again while Redis failed
        self.watch_start()
        await self.workers.ensure()  # the entry must never be younger than its heartbeat
        await self.workers.client().hset(
            _room_key(channel), f"{WORKER_ID}|{member}", json.dumps(list(user))
        )

    async def remove(self, channel: str, member: str) -> None:
        """Delete this worker's entry; never raises. When Redis cannot take it, or an earlier
        removal still waits for Redis, it waits too, for `removals_retry`."""
        self.entries.pop((channel, member), None)
        if self.removals:
            self.removals.add((channel, member))
            self.watch_start()
            return
        try:
            await self.workers.client().hdel(_room_key(channel), f"{WORKER_ID}|{member}")
        except Exception as e:
            self.removals.add((channel, member))
            self.watch_start()
            logger.warning(
                "presence: a leave could not reach Redis (%s); it and the next ones are "
                "retried every %g s",
                redis_error_reason(e),
                settings.WS_PRESENCE_TTL / 3,
            )

    async def removals_retry(self) -> int:
        """Delete the entries whose removal Redis did not take (raises while it still cannot);
        how many were deleted. The marker watcher runs it every round."""
        deleted = 0
        while self.removals:
            removals = list(self.removals)
            async with self.workers.client().pipeline(transaction=False) as pipe:
                for channel, member in removals:
                    pipe.hdel(_room_key(channel), f"{WORKER_ID}|{member}")
                await pipe.execute()
            self.removals.difference_update(removals)
            deleted += len(removals)
            # One joined again meanwhile may have been written before its old removal ran.
            for key in [key for key in removals if key in self.entries]:
                channel, member = key
                user = json.dumps(list(self.entries[key]))
                await self.workers.client().hset(_room_key(channel), f"{WORKER_ID}|{member}", user)
        if deleted:
            logger.warning("presence: Redis answers again; %d leave(s) written", deleted)
        return deleted

    async def users(self, channel: str) -> list[User]:
        client = self.workers.client()
        entries = await client.hgetall(_room_key(channel))
        worker_of = {field: text(field).split("|", 1)[0] for field in entries}
        alive = await self.workers.alive(sorted(set(worker_of.values())))
        dead = [field for field, worker in worker_of.items() if worker not in alive]
        if dead:
            dead_workers = sorted({worker_of[field] for field in dead})
            # Their markers after their entries: a worker that was only stalled, and wrote
            # its entries again meanwhile, finds its marker gone and writes them once more.
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(_room_key(channel), *dead)
                pipe.delete(*(marker_key(worker) for worker in dead_workers))
                await pipe.execute()
        return distinct_users(
            tuple(json.loads(value)) for field, value in entries.items() if field not in dead
        )

    def watch_start(self) -> None:
        """Check this worker's marker every WS_PRESENCE_TTL / 3 seconds (one task per loop)."""
        loop = asyncio.get_running_loop()
        task = self._watchers.get(loop)
        if task is None or task.done():
            for closed in [other for other in self._watchers if other.is_closed()]:
                del self._watchers[closed]
            self._watchers[loop] = loop.create_task(self._watch_run())

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks this runs (a marker watcher per loop), for the hub to cancel."""
        return list(self._watchers.values())

    async def _watch_run(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_PRESENCE_TTL / 3)
            try:
                await self.removals_retry()
                await self.entries_check()
            except Exception as e:  # Redis down: the layer-health log already says so
                logger.debug("presence marker check failed: %s", type(e).__name__)

    async def entries_check(self) -> int:
        """Renew this worker's marker; when it is gone, write every entry of this worker
        again. How many were written."""
        client = self.workers.client()
        ttl = MARKER_TTLS * settings.WS_PRESENCE_TTL
        if await client.expire(marker_key(WORKER_ID), ttl):
            return 0
        await self.workers.beat()  # alive first, or the next query deletes them again
        # The marker before the entries: whoever deletes them afterwards deletes it after.
        await client.set(marker_key(WORKER_ID), "1", ex=ttl)
        entries = list(self.entries.items())
        async with client.pipeline(transaction=False) as pipe:
            for (channel, member), user in entries:
                pipe.hset(_room_key(channel), f"{WORKER_ID}|{member}", json.dumps(list(user)))
            await pipe.execute()
        # A session that left meanwhile may have deleted its entry before it was written.
        left = [key for key, _ in entries if key not in self.entries]
        if left:
            async with client.pipeline(transaction=False) as pipe:
                for channel, member in left:
                    pipe.hdel(_room_key(channel), f"{WORKER_ID}|{member}")
                await pipe.execute()
        if self.marked and entries:
            logger.warning(
                "presence: this worker's entries were deleted (it looked dead, or Redis lost "
                "them); %d written again",
                len(entries),
            )
        self.marked = True
        return len(entries)
