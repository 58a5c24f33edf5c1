"""Which room groups each worker's fan-out channel is in, kept in Redis so that the channel
of a worker that died without leaving (SIGKILL, a lost machine) is taken out of them.

Without this, a dead worker's channel stays in its rooms' groups until
`CHANNEL_GROUP_EXPIRY` (a day): it fills to `WS_ROOM_FANOUT_CAPACITY`, and from then on every
message to those rooms is counted and logged as dropped for a worker that no longer exists.
Every worker reaps, every `WS_PRESENCE_TTL` seconds, the workers whose heartbeat
(`realtime.cluster.workers`) has lapsed. A worker that finds its own record gone (reaped while it
stalled, or Redis restarted empty) adds its channel back to its rooms.
"""

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from core.redis import text
from realtime.cluster.workers import WORKER_ID, WorkerHeartbeat
from realtime.rooms.policy import room_group

logger = logging.getLogger("switchboard.realtime")

RoomReaped = Callable[[str, list[str]], Awaitable[object]]  # (room, dead workers)
CHANNELS_KEY = "switchboard:fanout-channels"  # hash: worker id -> its fan-out channel


def rooms_key(worker: str) -> str:
    """The set of rooms whose group holds `worker`'s fan-out channel."""
    return f"switchboard:fanout-rooms:{worker}"


class RedisFanoutMembers:
    """The membership records in Redis, on the heartbeat's client."""

    def __init__(self, beat: WorkerHeartbeat) -> None:
        self.beat = beat

    async def worker_record(self, channel_name: str, rooms: Iterable[str]) -> None:
        """This worker's channel and every room it is in (replacing what was recorded)."""
        async with self.beat.client().pipeline(transaction=True) as pipe:
            pipe.hset(CHANNELS_KEY, WORKER_ID, channel_name)
            pipe.delete(rooms_key(WORKER_ID))
            rooms = sorted(rooms)
            if rooms:
                pipe.sadd(rooms_key(WORKER_ID), *rooms)
            await pipe.execute()

    async def room_added(self, room: str) -> None:
        await self.beat.client().sadd(rooms_key(WORKER_ID), room)

    async def room_removed(self, room: str) -> None:
        await self.beat.client().srem(rooms_key(WORKER_ID), room)

    async def recorded(self) -> bool:
        """Whether this worker's record is still there."""
        return bool(await self.beat.client().hexists(CHANNELS_KEY, WORKER_ID))

    async def dead_reap(self, layer: Any, room_reaped: RoomReaped | None = None) -> int:
        """Take every dead worker's channel out of its room groups (and tell `room_reaped`
        each room and worker: its presence goes too); how many workers."""
        client = self.beat.client()
        channels = {
            text(worker): text(channel)
            for worker, channel in (await client.hgetall(CHANNELS_KEY)).items()
        }
        others = sorted(set(channels) - {WORKER_ID})
        alive = await self.beat.alive(others)
        dead = [worker for worker in others if worker not in alive]
        reaped = 0
        for worker in dead:
            # Claim it first: one reaper per dead worker, and a worker that was only stalled
            # finds its record gone and rejoins its rooms (`RoomFanout.reap_once`), even if
            # this reaper fails half-way.
            if not await client.hdel(CHANNELS_KEY, worker):
                continue  # another worker is reaping it
            rooms = sorted(text(room) for room in await client.smembers(rooms_key(worker)))
            for room in rooms:
                await layer.group_discard(room_group(room), channels[worker])
                if room_reaped is not None:
                    await room_reaped(room, [worker])
            await client.delete(rooms_key(worker))
            reaped += 1
            logger.warning(
                "room fan-out: dead worker %s taken out of %d room(s)", worker, len(rooms)
            )
        return reaped


class LocalFanoutMembers:
    """No Redis: this process is the only worker; there is nobody to reap."""

    async def worker_record(self, channel_name: str, rooms: Iterable[str]) -> None:
        return None

    async def room_added(self, room: str) -> None:
        return None

    async def room_removed(self, room: str) -> None:
        return None

    async def recorded(self) -> bool:
        return True

    async def dead_reap(self, layer: Any, room_reaped: RoomReaped | None = None) -> int:
        return 0
