"""Room fan-out: one channel-layer channel per worker for every room subscriber it holds.

A publish is one `group_send` to the room's group, whose members are workers, not sessions:
each worker receives a message once, encodes its frame once and hands it to its local
subscribers in order. The first local subscriber of a room adds the worker's channel to the
room's group; the last one out discards it. Presence stays per session (`realtime.rooms.presence`).
The sessions' own events (revocations, disconnects) come through another worker channel, on
the default layer (`realtime.session.user_groups`), which room traffic can neither fill nor
hold back.

With Redis, the worker channel lives on its own channel layer (`CHANNEL_LAYERS["rooms"]`):
channels-redis lets one coroutine at a time block on a process's inbound key, so sharing the
default layer would let the sessions' events and room messages hold each other back. Its
capacity is
`WS_ROOM_FANOUT_CAPACITY` undelivered messages; past it Redis refuses the write, which
`realtime.rooms.overload` counts and logs. Without that alias (the in-memory layer), the
default layer carries it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from django.conf import settings

from core.keyed_locks import KeyedLocks
from core.periodic import periodically
from realtime import metrics
from realtime.cluster.health import LayerHealth
from realtime.protocol.frames import frame_encode
from realtime.rooms.feed import Deliver, Item, RoomFeed
from realtime.rooms.history import HistoryRead, MemoryHistory, Position, RedisHistory
from realtime.rooms.membership import LocalFanoutMembers, RedisFanoutMembers, RoomReaped
from realtime.rooms.namespaces import namespace_of
from realtime.rooms.policy import room_group

logger = logging.getLogger("switchboard.realtime")

LAYER_ALIAS = "rooms"
CHANNEL_PREFIX = "rooms"  # `WS_ROOM_FANOUT_CAPACITY` applies to channels named `rooms.*`
MEMBER_EVENTS = {"room.join": "join", "room.leave": "leave"}
REAPS_PER_TTL = 10


def room_layer_alias() -> str:
    """The channel layer of the worker channel: `rooms` when configured, else the default."""
    return LAYER_ALIAS if LAYER_ALIAS in settings.CHANNEL_LAYERS else DEFAULT_CHANNEL_LAYER


def message_frame(event: dict[str, Any]) -> str:
    """The `message` frame of a `room.message` event, as every subscriber receives it (in a
    room with history: with its offset and epoch last, as `realtime.rooms.history` stores it)."""
    fields: dict[str, Any] = {"from": event["from"]}
    if "offset" in event:
        fields.update(offset=event["offset"], epoch=event["epoch"])
    return frame_encode(
        "message", channel=event["channel"], data=event["data"], ts=event["ts"], **fields
    )


def event_item(event: dict[str, Any]) -> Item | None:
    """What a channel-layer event hands the room's subscribers (None: not a room event)."""
    kind = event.get("type")
    if kind == "room.message":
        return Item(message_frame(event), event.get("offset"), event.get("epoch"))
    if kind == "room.join":
        return Item(frame_encode("join", channel=event["channel"], user=event["user"]))
    if kind == "room.leave":
        return Item(frame_encode("leave", channel=event["channel"], user=event["user"]))
    return None


class RoomFanout:
    """This worker's room subscribers on one event loop, and the channel they share (one per
    loop, held by the hub: `realtime.hub`)."""

    def __init__(
        self,
        layer: Any,
        *,
        health: LayerHealth,
        members: RedisFanoutMembers | LocalFanoutMembers,
        history: RedisHistory | MemoryHistory,
        room_reaped: RoomReaped | None = None,
    ) -> None:
        self.layer = layer
        self.health = health
        self.members = members
        self.history = history
        self.room_reaped = room_reaped  # a dead worker left this room: its presence goes too
        self.channel_name: str | None = None
        # room → its local subscribers (in the order they joined) and message order.
        self.rooms: dict[str, RoomFeed] = {}
        self.joined: set[str] = set()  # rooms whose group holds this worker's channel
        self._locks = KeyedLocks()  # joins and leaves of one room, one at a time
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
                loop.create_task(
                    periodically(settings.CHANNEL_GROUP_EXPIRY / 4, self.groups_renew)
                ),
                loop.create_task(self._reap_run()),
            ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks this runs (receive, renew, reap), for the hub to cancel when it closes."""
        return list(self._tasks)

    def _feed_new(self, channel: str) -> RoomFeed:
        namespace = namespace_of(channel)
        if not namespace.history:
            return RoomFeed(channel)

        async def reader(since: Position) -> HistoryRead:
            return await self.history.read(
                channel,
                namespace,
                since=since.offset,
                since_epoch=since.epoch,
                limit=namespace.history_size,
            )

        return RoomFeed(channel, reader=reader)

    async def subscribe(
        self, channel: str, subscriber: object, deliver: Deliver, *, hold: bool = False
    ) -> None:
        """Deliver room `channel`'s messages to `subscriber` from now on (with `hold`: kept
        for it until `release`); raises when the worker channel cannot join the room's group
        or, in a room with history, the room's position cannot be read (the subscriber is
        then not added)."""
        await self.start()
        async with self._locks.hold(channel):
            if channel not in self.joined:
                await self.layer.group_add(room_group(channel), self.channel_name)
                self.joined.add(channel)
                await self._members_update(self.members.room_added, channel)
            feed = self.rooms.get(channel)
            if feed is None:
                feed = self._feed_new(channel)
                if feed.reader is not None:  # where the room stands once this worker is in
                    read = await self.history.read(channel, namespace_of(channel), limit=0)
                    feed.start(read.top)
                self.rooms[channel] = feed
            feed.add(subscriber, deliver, hold=hold)

    async def release(self, channel: str, subscriber: object, top: Position) -> None:
        """`subscriber` was sent the room's history up to `top`: live messages follow."""
        feed = self.rooms.get(channel)
        if feed is not None:
            await feed.release(subscriber, top)

    def position_of(self, channel: str, subscriber: object) -> Position | None:
        """The last position sent to `subscriber` in `channel` (rooms with history)."""
        feed = self.rooms.get(channel)
        return None if feed is None else feed.position_of(subscriber)

    async def unsubscribe(self, channel: str, subscriber: object) -> None:
        """Stop delivering to `subscriber`; the last one out takes the worker channel out of
        the group (while the layer is unreachable, once it is back). Never raises."""
        async with self._locks.hold(channel):
            feed = self.rooms.get(channel)
            if feed is not None:
                feed.remove(subscriber)
                if feed.members:
                    return
            self.rooms.pop(channel, None)
            if channel not in self.joined:
                return
            self.joined.discard(channel)

        async def discard() -> None:
            async with self._locks.hold(channel):
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
                async with self._locks.hold(channel):
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
            await members.dead_reap(self.layer, self.room_reaped)
        except Exception as e:
            logger.debug("room fan-out reaping failed: %s", type(e).__name__)

    async def _reap_run(self) -> None:
        # Often enough that a dead worker's users leave their rooms (join/leave events)
        # within a tenth of WS_PRESENCE_TTL of its heartbeat lapsing.
        while True:
            await asyncio.sleep(settings.WS_PRESENCE_TTL / REAPS_PER_TTL)
            await self.reap_once()

    async def member_event(self, kind: str, channel: str, user: tuple[int, str]) -> None:
        """Tell every subscriber of `channel`, on every worker, that `user` joined or left
        (`kind`: "join", "leave"). A failure is logged: the event is not retried."""
        event = {
            "type": f"room.{kind}",
            "channel": channel,
            "user": {"id": user[0], "username": user[1]},
            "sent_at": time.time(),
        }
        try:
            await self.layer.group_send(room_group(channel), event)
        except Exception as e:
            self.health.failed("group_send", e, room_group(channel))
            logger.warning("room %s: a %s event was not sent (%s)", channel, kind, type(e).__name__)

    async def _receive_run(self) -> None:
        """Read the worker channel for as long as the worker runs; waits out layer outages."""
        assert self.channel_name is not None
        while True:
            event = await self.health.receive(self.layer, self.channel_name)
            try:
                await self.deliver(event)
            except Exception:
                logger.exception("room fan-out failed on one message")

    async def deliver(self, event: dict[str, Any]) -> None:
        """Hand one room event (a message, a join, a leave) to every local subscriber of its
        room, in the order they subscribed (`realtime.rooms.feed`: in a room with history,
        in offset order). Sends go to the server's buffer (whose slow-client limit closes a
        subscriber that stops reading), so one subscriber never holds up another."""
        item = event_item(event)
        if item is None:
            logger.warning("room fan-out ignored an event of type %r", event.get("type"))
            return
        feed = self.rooms.get(event["channel"])
        if feed is None:
            return  # the last subscriber left while it was on its way
        if event["type"] == "room.message":
            metrics.fanout_observe("room.message", event)
        sent = await feed.arrive(item)
        kind = "message" if event["type"] == "room.message" else MEMBER_EVENTS[event["type"]]
        metrics.labelled(metrics.WS_SENT, "session", kind).inc(sent)
