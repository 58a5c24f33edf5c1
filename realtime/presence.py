"""Who is in which room right now, across every worker.

With Redis, each room is a hash of `<worker>|<connection>` → `[user_id, username]`. A worker
killed with SIGKILL stops its heartbeat (`realtime.workers`): within WS_PRESENCE_TTL its
entries stop counting, and the next presence query deletes them. Without Redis, presence is
this process's memory.
"""

import json
from collections import defaultdict
from functools import cache

from realtime.workers import KEY_PREFIX, WORKER_ID, WorkerHeartbeat, heartbeat

User = tuple[int, str]


def _room_key(channel: str) -> str:
    return f"{KEY_PREFIX}presence:{channel}"


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
    """Presence shared by every worker through Redis; entries of dead workers (no heartbeat,
    see `realtime.workers`) stop counting and are deleted by the next query."""

    def __init__(self, workers: WorkerHeartbeat) -> None:
        self.workers = workers

    async def add(self, channel: str, member: str, user: User) -> None:
        await self.workers.ensure()  # the entry must never be younger than its heartbeat
        await self.workers.client().hset(
            _room_key(channel), f"{WORKER_ID}|{member}", json.dumps(list(user))
        )

    async def remove(self, channel: str, member: str) -> None:
        await self.workers.client().hdel(_room_key(channel), f"{WORKER_ID}|{member}")

    async def users(self, channel: str) -> list[User]:
        client = self.workers.client()
        entries = await client.hgetall(_room_key(channel))
        worker_of = {field: field.decode().split("|", 1)[0] for field in entries}
        alive = await self.workers.alive(sorted(set(worker_of.values())))
        dead = [field for field, worker in worker_of.items() if worker not in alive]
        if dead:
            await client.hdel(_room_key(channel), *dead)
        return distinct_users(
            tuple(json.loads(value)) for field, value in entries.items() if field not in dead
        )


@cache
def presence() -> MemoryPresence | RedisPresence:
    """This process's presence store, chosen by REDIS_URL."""
    workers = heartbeat()
    return RedisPresence(workers) if isinstance(workers, WorkerHeartbeat) else MemoryPresence()
