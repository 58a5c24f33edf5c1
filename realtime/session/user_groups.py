"""This worker's sessions by user, and the worker channel their own events come through.

A user's group (`realtime.events.user_group`) holds, once, the channel of every worker with
one of the user's sessions open, not a channel per session: the first local session of a
user adds the worker channel to the group, the last one out discards it, and the worker
renews them all (before CHANNEL_GROUP_EXPIRY, and after an outage). A revocation or a
disconnect sent to the group names the user; an operator's disconnect of one session, sent
to the channel its registry row names, names the session. Each reaches its sessions here, in
a task per session that waits its turn behind whatever event the session is handling
(`SessionConsumer.dispatch`).

The channel is the default layer's, not the room fan-out's (`realtime.rooms.fanout`, on the
`rooms` layer): room traffic can neither fill it (channels-redis drops a group message to a
full channel) nor hold its reads back.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings

from core.keyed_locks import KeyedLocks
from core.periodic import periodically
from realtime.cluster.health import LayerHealth
from realtime.events import user_group
from realtime.hub import hub

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer

logger = logging.getLogger("switchboard.realtime")

SESSION_EVENTS = frozenset({"session.revoke", "session.revoke_token", "session.disconnect"})


async def worker_channel() -> str:
    """The name of the channel this worker's sessions' events come through."""
    return await hub().user_sessions.start()


class UserSessions:
    """The sessions open on this worker (one event loop), by user and by id, and the
    channel (of `layer`) their events come through."""

    def __init__(self, layer: Any, health: LayerHealth) -> None:
        self.layer = layer
        self.health = health
        self.channel_name: str | None = None
        self.users: dict[int, dict[str, SessionConsumer]] = {}
        self.sessions: dict[str, SessionConsumer] = {}
        self.joined: set[int] = set()  # users whose group holds the worker channel
        self._locks = KeyedLocks()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> str:
        """Name the channel and start reading it and renewing its groups (once)."""
        if self.channel_name is None:
            # The default prefix: channels-redis reads every local channel of one prefix
            # through one key, held by one receive at a time; `/readyz`'s probe channel has
            # this prefix too, and this reader's receive serves it.
            self.channel_name = await self.layer.new_channel()
        if not self._tasks:
            renewal = periodically(settings.CHANNEL_GROUP_EXPIRY / 4, self.groups_renew)
            self._tasks = [asyncio.ensure_future(run) for run in (self._receive_run(), renewal)]
        return self.channel_name

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks this runs (receive, renew), for the hub to cancel when it closes."""
        return list(self._tasks)

    # -- membership ---------------------------------------------------------------------

    def register(self, session: "SessionConsumer") -> None:
        """Hand `session` the events that name it from now on (before its registry row is
        written: a disconnect of that row finds it)."""
        self.users.setdefault(session.user.pk, {})[session.session_id] = session
        self.sessions[session.session_id] = session

    async def join(self, session: "SessionConsumer") -> bool:
        """Reach `session` through its user's group from now on; whether the group holds
        the worker channel (False: the layer failed or is down; the renewal after its
        recovery adds the group of every user with a session here)."""
        self.register(session)
        user_id = session.user.pk
        return user_id in self.joined or await self._group_add(user_id, renew=False)

    async def leave(self, session: "SessionConsumer") -> None:
        """`session` is gone; the user's last one here takes the worker channel out of the
        user's group (while the layer is unreachable, once it is back). Never raises."""
        user_id = session.user.pk
        self.sessions.pop(session.session_id, None)
        mine = self.users.get(user_id, {})
        mine.pop(session.session_id, None)
        if mine:
            return
        self.users.pop(user_id, None)
        if user_id not in self.joined:
            return
        self.joined.discard(user_id)
        group = user_group(user_id)

        async def discard() -> None:
            async with self._locks.hold(group):
                if user_id not in self.joined:  # nobody of the user's opened again meanwhile
                    await self.layer.group_discard(group, await self.start())

        await self.health.leave_now_or_later(discard, group)

    async def _group_add(self, user_id: int, *, renew: bool) -> bool:
        group = user_group(user_id)
        if not self.health.available_for(group):
            self.joined.discard(user_id)
            return False
        try:
            channel = await self.start()
            async with self._locks.hold(group):
                if user_id in self.users and (renew or user_id not in self.joined):
                    await self.layer.group_add(group, channel)
                    if user_id in self.users:
                        self.joined.add(user_id)
                    else:  # the user's last session here left during the add
                        await self.layer.group_discard(group, channel)
        except Exception as e:
            self.joined.discard(user_id)  # the next session of the user adds it again
            self.health.failed("group_add", e, group)
            return False
        return True

    async def groups_renew(self) -> None:
        """Add the worker channel again to the group of every user with a session here:
        after an outage (Redis may have forgotten them) and before CHANNEL_GROUP_EXPIRY.
        A user whose group could not be added is left out of `joined`, so that the next
        session of theirs adds it."""
        for user_id in sorted(self.users):
            await self._group_add(user_id, renew=True)

    # -- events -------------------------------------------------------------------------

    async def _receive_run(self) -> None:
        """Read the channel for as long as the worker runs; waits out layer outages."""
        assert self.channel_name is not None
        while True:
            self.deliver(await self.health.receive(self.layer, self.channel_name))

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand a session event to the session it names, or to every session here of the
        user it names."""
        kind = event.get("type")
        if kind not in SESSION_EVENTS:
            logger.warning("worker channel: ignored an event of type %r", kind)
            return
        session_id = event.get("session_id")
        if session_id is not None:
            session = self.sessions.get(session_id)
            targets = [] if session is None else [session]
        elif isinstance(event.get("user_id"), int):
            targets = list(self.users.get(event["user_id"], {}).values())
        else:
            logger.warning("worker channel: a %s event named no user or session", kind)
            return
        for session in targets:
            hub().spawn(session.dispatch(event))
