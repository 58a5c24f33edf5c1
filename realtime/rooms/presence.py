"""Who is in which room right now, across every worker.

With Redis, each room is a hash of `<worker>|<connection>` → `[user_id, username]`, beside a
hash counting each user's entries (`presence-users:<room>`), both changed only by the Lua
scripts below, so a subscribe knows whether it is the user's first session in the room on
any worker, and a leave whether it was the last (join/leave events,
`realtime.rooms.namespaces`). A worker killed with SIGKILL stops its heartbeat
(`realtime.cluster.workers`): within WS_PRESENCE_TTL its entries stop counting, and the next
presence query deletes them. Without Redis, presence is this process's memory.

A worker that only stalled past WS_PRESENCE_TTL (SIGSTOP, a long pause) looks just as dead,
and loses its entries the same way, while its sessions live on. So each worker keeps a
marker key, renewed every WS_PRESENCE_TTL / 3 seconds, that whoever deletes its entries
deletes too: a worker that finds its marker gone (deleted, expired, or Redis restarted)
writes every entry it holds again, as the room fan-out puts its channel back in its rooms.

Presence lives in REDIS_URL's Redis, not on the channel layer (which REDIS_LAYER_URLS may
shard elsewhere), so a leave never waits for the layer. One that this Redis cannot take is
kept, and the marker watcher deletes it on its next round (announcing the leave then, where
the namespace has join/leave events); until then, later leaves wait with it instead of each
waiting for a timeout.
"""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from django.conf import settings

from core.redis import redis_error_reason, text
from core.redis_script import LuaScript
from realtime.cluster.workers import KEY_PREFIX, WORKER_ID, WorkerHeartbeat

logger = logging.getLogger("switchboard.realtime")

User = tuple[int, str]
Departed = Callable[[str, list[User]], Awaitable[None]]  # (room, users who left it)
MARKER_TTLS = 10  # the marker outlives this many WS_PRESENCE_TTLs without a renewal


def _room_key(channel: str) -> str:
    return f"{KEY_PREFIX}presence:{channel}"


def _keys(channel: str) -> list[str]:
    return [_room_key(channel), f"{KEY_PREFIX}presence-users:{channel}"]


# KEYS: entries, counts. ARGV: field, value, user id. 1 when this is the user's first entry.
_ADD = LuaScript(
    """
if redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  return redis.call('hincrby', KEYS[2], ARGV[3], 1) == 1 and 1 or 0
end
return 0
"""
)

# KEYS: entries, counts. ARGV: field, user id. 1 when it was the user's last entry.
_REMOVE = LuaScript(
    """
if redis.call('hdel', KEYS[1], ARGV[1]) == 1 then
  if redis.call('hincrby', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('hdel', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"""
)

# KEYS: entries, counts. ARGV: dead workers. Deletes their entries; the users who left (their
# last entry went), as the entries' values.
_REAP = LuaScript(
    """
local dead = {}
for _, worker in ipairs(ARGV) do dead[worker] = true end
local entries = redis.call('hgetall', KEYS[1])
local left = {}
for i = 1, #entries, 2 do
  local field, value = entries[i], entries[i + 1]
  local worker = string.match(field, '^(.*)|')
  if worker and dead[worker] then
    redis.call('hdel', KEYS[1], field)
    local user = string.format('%.0f', cjson.decode(value)[1])
    if redis.call('hincrby', KEYS[2], user, -1) <= 0 then
      redis.call('hdel', KEYS[2], user)
      table.insert(left, value)
    end
  end
end
return left
"""
)


def marker_key(worker: str) -> str:
    """Exists while every presence entry of `worker` is in Redis."""
    return f"{KEY_PREFIX}presence-worker:{worker}"


def _add_args(member: str, user: User) -> list[object]:
    return [f"{WORKER_ID}|{member}", json.dumps(list(user)), user[0]]


def _user(value: bytes | str) -> User:
    user_id, username = json.loads(value)
    return (int(user_id), str(username))


def distinct_users(entries: Iterable[User]) -> list[User]:
    """One (id, username) per user id, by id (a rename mid-subscription keeps one entry)."""
    return sorted(dict(entries).items())


class MemoryPresence:
    """Presence in this process only (the in-memory channel layer reaches no other worker)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, User]] = defaultdict(dict)

    async def add(self, channel: str, member: str, user: User) -> bool:
        """Add `member`'s entry; whether it is the user's first in the room."""
        room = self.rooms[channel]
        first = member not in room and all(other[0] != user[0] for other in room.values())
        room[member] = user
        return first

    async def remove(self, channel: str, member: str, user: User) -> bool:
        """Remove `member`'s entry; whether it was the user's last in the room."""
        room = self.rooms.get(channel)
        if room is None or room.pop(member, None) is None:
            return False
        if not room:
            del self.rooms[channel]
        return all(other[0] != user[0] for other in (room or {}).values())

    async def workers_reap(self, channel: str, workers: list[str]) -> list[User]:
        return []  # this process is the only worker

    async def users(self, channel: str) -> list[User]:
        return distinct_users(self.rooms.get(channel, {}).values())

    def tasks(self) -> list[asyncio.Task[None]]:
        return []


class RedisPresence:
    """Presence shared by every worker through Redis; entries of dead workers (no heartbeat,
    see `realtime.cluster.workers`) stop counting and are deleted by the next query. This worker's
    entries are also kept here, to be written again when another worker deleted them."""

    def __init__(self, workers: WorkerHeartbeat, departed: Departed | None = None) -> None:
        self.workers = workers
        self.departed = departed  # told who left a room with a dead worker or a late removal
        self.removals: dict[tuple[str, str], User] = {}  # this worker's leaves Redis kept
        self.entries: dict[tuple[str, str], User] = {}  # (room, member) → user, this worker's
        self._watchers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self.marked = False  # the marker was set once: a missing one means entries were lost

    async def add(self, channel: str, member: str, user: User) -> bool:
        """Add `member`'s entry; whether it is the user's first in the room (on any worker)."""
        self.entries[(channel, member)] = user
        self.removals.pop((channel, member), None)  # left and joined again while Redis failed
        self.watch_start()
        await self.workers.ensure()  # the entry must never be younger than its heartbeat
        return bool(await _ADD.run(self.workers.client(), _keys(channel), _add_args(member, user)))

    async def remove(self, channel: str, member: str, user: User) -> bool:
        """Delete this worker's entry; whether it was the user's last in the room. Never
        raises: when Redis cannot take it, or an earlier removal still waits for Redis, it
        waits too, for `removals_retry` (which announces the leave, `departed`)."""
        self.entries.pop((channel, member), None)
        if self.removals:
            self.removals[(channel, member)] = user
            self.watch_start()
            return False
        try:
            return await self._remove(channel, member, user)
        except Exception as e:
            self.removals[(channel, member)] = user
            self.watch_start()
            logger.warning(
                "presence: a leave could not reach Redis (%s); it and the next ones are "
                "retried every %g s",
                redis_error_reason(e),
                settings.WS_PRESENCE_TTL / 3,
            )
            return False

    async def _remove(self, channel: str, member: str, user: User) -> bool:
        args = [f"{WORKER_ID}|{member}", user[0]]
        return bool(await _REMOVE.run(self.workers.client(), _keys(channel), args))

    async def removals_retry(self) -> int:
        """Delete the entries whose removal Redis did not take (raises while it still cannot);
        how many were deleted. The marker watcher runs it every round."""
        deleted = 0
        while self.removals:
            (channel, member), user = next(iter(self.removals.items()))
            last = await self._remove(channel, member, user)
            self.removals.pop((channel, member), None)
            deleted += 1
            if (channel, member) in self.entries:  # joined again: its entry goes back
                user = self.entries[(channel, member)]
                await _ADD.run(self.workers.client(), _keys(channel), _add_args(member, user))
            elif last and self.departed is not None:
                await self.departed(channel, [user])
        if deleted:
            logger.warning("presence: Redis answers again; %d leave(s) written", deleted)
        return deleted

    async def workers_reap(self, channel: str, workers: list[str]) -> list[User]:
        """Delete the entries of dead `workers` in the room; the users who left with them."""
        if not workers:
            return []
        left = await _REAP.run(self.workers.client(), _keys(channel), workers)
        return [_user(value) for value in left]

    async def users(self, channel: str) -> list[User]:
        """Who is in the room; dead workers' entries are deleted on the way (and their users'
        departures announced, `departed`)."""
        client = self.workers.client()
        entries = await client.hgetall(_room_key(channel))
        worker_of = {field: text(field).split("|", 1)[0] for field in entries}
        alive = await self.workers.alive(sorted(set(worker_of.values())))
        dead_workers = sorted({worker for worker in worker_of.values() if worker not in alive})
        await self.dead_reap(channel, dead_workers)
        return distinct_users(
            _user(value) for field, value in entries.items() if worker_of[field] in alive
        )

    async def dead_reap(self, channel: str, dead_workers: list[str]) -> list[User]:
        """Delete dead workers' entries in the room, then their markers (a worker that was
        only stalled, and wrote its entries again meanwhile, finds its marker gone and writes
        them once more); the users who left."""
        if not dead_workers:
            return []
        departed = await self.workers_reap(channel, dead_workers)
        await self.workers.client().delete(*(marker_key(worker) for worker in dead_workers))
        if departed and self.departed is not None:
            await self.departed(channel, departed)
        return departed

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
        for (channel, member), user in entries:
            await _ADD.run(client, _keys(channel), _add_args(member, user))
        # A session that left meanwhile may have deleted its entry before it was written.
        for (channel, member), user in entries:
            if (channel, member) not in self.entries:
                await _REMOVE.run(client, _keys(channel), [f"{WORKER_ID}|{member}", user[0]])
        if self.marked and entries:
            logger.warning(
                "presence: this worker's entries were deleted (it looked dead, or Redis lost "
                "them); %d written again",
                len(entries),
            )
        self.marked = True
        return len(entries)
