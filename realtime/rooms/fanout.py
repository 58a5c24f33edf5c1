"""Room fan-out: one channel-layer channel per worker for every room subscriber it holds.

A publish is one `group_send` to the room's group, whose members are workers, not sessions:
each worker receives a message once, encodes its frame once and hands it to its local
subscribers in order. The first local subscriber of a room adds the worker's channel to the
room's group; the last one out discards it. Presence stays per session (`realtime.rooms.presence`).

With Redis, the worker channel lives on its own channel layer (`CHANNEL_LAYERS["rooms"]`):
channels-redis lets one coroutine at a time block on a process's inbound key, so sharing the
sessions' layer would let idle sessions hold room messages back. Its capacity is
`WS_ROOM_FANOUT_CAPACITY` undelivered messages; past it Redis refuses the write, which
`realtime.rooms.overload` counts and logs. Without that alias (the in-memory layer), the
default layer carries it.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from django.conf import settings

from realtime import metrics
from realtime.cluster.health import LayerHealth
from realtime.protocol.frames import frame_encode
from realtime.rooms.membership import LocalFanoutMembers, RedisFanoutMembers
from realtime.rooms.policy import room_group

logger = logging.getLogger("switchboard.realtime")

LAYER_ALIAS = "rooms"
CHANNEL_PREFIX = "rooms"  # `WS_ROOM_FANOUT_CAPACITY` applies to channels named `rooms.*`
Deliver = Callable[[str, str], Awaitable[None]]  # (room, frame text)


def room_layer_alias() -> str:
    """The channel layer of the worker channel: `rooms` when configured, else the default."""
    return LAYER_ALIAS if LAYER_ALIAS in settings.CHANNEL_LAYERS else DEFAULT_CHANNEL_LAYER


def message_frame(event: dict[str, Any]) -> str:
    """The `message` frame of a `room.message` event, as every subscriber receives it."""
    return frame_encode(
        "message",
        channel=event["channel"],
        data=event["data"],
        ts=event["ts"],
        **{"from": event["from"]},
    )


class RoomFanout:
    """This worker's room subscribers on one event loop, and the channel they share (one per
    loop, held by the hub: `realtime.hub`)."""

    def __init__(
        self, layer: Any, *, health: LayerHealth, members: RedisFanoutMembers | LocalFanoutMembers
    ) -> None:
        self.layer = layer
        self.health = health
        self.members = members
        self.channel_name: str | None = None
        # room → subscriber → deliver(room, text); dicts keep the order they joined in.
        self.rooms: dict[str, dict[object, Deliver]] = {}
        self.joined: set[str] = set()  # rooms whose group holds this worker's channel
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Name the worker channel and start reading it and renewing its groups (once)."""
        if self.channel_name is None:
            self.channel_name = await self.layer.new_channel(CHANNEL_PREFIX)
            await self._members_record()
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._receive_run()),
                loop.create_task(self._renew_run()),
                loop.create_task(self._reap_run()),
            ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks this runs (receive, renew, reap), for the hub to cancel when it closes."""
        return list(self._tasks)

    @asynccontextmanager
    async def _room_lock(self, channel: str) -> AsyncIterator[None]:
        """Joins and leaves of one room, one at a time (a lock that goes when unused)."""
        lock, users = self._locks.get(channel, (asyncio.Lock(), 0))
        self._locks[channel] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[channel]
            if users == 1:
                del self._locks[channel]
            else:
                self._locks[channel] = (lock, users - 1)

    async def subscribe(self, channel: str, subscriber: object, deliver: Deliver) -> None:
        """Deliver room `channel`'s messages to `subscriber` from now on; raises when the
        worker channel cannot join the room's group (the subscriber is then not added)."""
        await self.start()
        async with self._room_lock(channel):
            if channel not in self.joined:
                await self.layer.group_add(room_group(channel), self.channel_name)
                self.joined.add(channel)
                await self._members_update(self.members.room_added, channel)
            self.rooms.setdefault(channel, {})[subscriber] = deliver

    async def unsubscribe(self, channel: str, subscriber: object) -> None:
        """Stop delivering to `subscriber`; the last one out takes the worker channel out of
        the group (while the layer is unreachable, once it is back). Never raises."""
        async with self._room_lock(channel):
            members = self.rooms.get(channel, {})
            members.pop(subscriber, None)
            if members:
                return
            self.rooms.pop(channel, None)
            if channel not in self.joined:
                return
            self.joined.discard(channel)

        async def discard() -> None:
            async with self._room_lock(channel):
                if channel not in self.joined:  # nobody subscribed again meanwhile
                    await self.layer.group_discard(room_group(channel), self.channel_name)
                    await self._members_update(self.members.room_removed, channel)

        await self.health.leave_now_or_later(discard, room_group(channel))

    async def groups_renew(self) -> None:
        """Add the worker channel again to every room group it belongs in: after an outage
        (Redis may have forgotten them) and before `CHANNEL_GROUP_EXPIRY` lapses."""
        if self.channel_name is None or not self.health.available_for(self.channel_name):
            return
        for channel in sorted(self.joined):
            group = room_group(channel)
            if not self.health.available_for(group):
                continue  # its shard is down: its recovery renews it
            try:
                async with self._room_lock(channel):
                    if channel in self.joined:
                        await self.layer.group_add(group, self.channel_name)
            except Exception as e:
                self.health.failed("group_add", e, group)
                return
        await self._members_record()

    async def _members_record(self) -> None:
        await self._members_update(self.members.worker_record, self.channel_name, self.joined)

    async def _members_update(self, update: Callable[..., Awaitable[None]], *args: Any) -> None:
        """One membership-record write; a failure is logged: the next reap pass repairs it."""
        try:
            await update(*args)
        except Exception as e:
            logger.debug("room fan-out membership record failed: %s", type(e).__name__)

    async def reap_once(self) -> None:
        """Take dead workers' channels out of their rooms; put this worker's channel back
        into its rooms if its own record is gone (it was reaped, or Redis lost it)."""
        if not self.health.available or self.channel_name is None:
            return
        members = self.members
        try:
            if not await members.recorded():
                logger.warning("room fan-out: this worker's record was gone; rejoining rooms")
                await self.groups_renew()
            await members.dead_reap(self.layer)
        except Exception as e:
            logger.debug("room fan-out reaping failed: %s", type(e).__name__)

    async def _reap_run(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_PRESENCE_TTL)
            await self.reap_once()

    async def _renew_run(self) -> None:
        while True:
            await asyncio.sleep(settings.CHANNEL_GROUP_EXPIRY / 4)
            await self.groups_renew()

    async def _receive_run(self) -> None:
        """Read the worker channel for as long as the worker runs; waits out layer outages."""
        while True:
            await self.health.wait_up(self.channel_name)
            try:
                event = await self.layer.receive(self.channel_name)
            except Exception as e:
                self.health.failed("receive", e, self.channel_name)
                continue
            try:
                await self.deliver(event)
            except Exception:
                logger.exception("room fan-out failed on one message")

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send one `room.message` event to every local subscriber of its room, in the order
        they subscribed. Sends go to the server's buffer (daphne's, whose slow-client limit
        closes a subscriber that stops reading), so one subscriber never holds up another."""
        if event.get("type") != "room.message":
            logger.warning("room fan-out ignored an event of type %r", event.get("type"))
            return
        members = self.rooms.get(event["channel"])
        if not members:
            return  # the last subscriber left while it was on its way
        metrics.fanout_observe("room.message", event)
        channel, text = event["channel"], message_frame(event)
        sent = 0
        for deliver in list(members.values()):
            try:
                await deliver(channel, text)
                sent += 1
            except Exception as e:
                metrics.ROOM_FANOUT_DROPPED.labels("send_failed").inc()
                logger.warning(
                    "room fan-out: a message to room %s not sent to one subscriber (%s)",
                    event["channel"],
                    type(e).__name__,
                )
        metrics.labelled(metrics.WS_SENT, "session", "message").inc(sent)
