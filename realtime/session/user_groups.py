"""This worker's sessions by user, reached through the worker's channel.

A user's group (`realtime.events.user_group`) holds the worker channel of every worker with
one of the user's sessions open (the room fan-out's channel, `realtime.rooms.fanout`), not a
channel per session: the first local session of a user adds the worker channel to the group,
the last one out discards it, and the fan-out renews it with its room groups. A revocation
or a disconnect sent to the group names the user; one sent to the worker channel for one
session (an operator's) names the session. Each reaches its sessions here, in a task of its
own per session, behind whatever event the session is handling (`SessionConsumer.dispatch`).
"""

import logging
from typing import TYPE_CHECKING, Any

from core.keyed_locks import KeyedLocks
from realtime.cluster.health import LayerHealth
from realtime.events import user_group
from realtime.hub import hub

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer

logger = logging.getLogger("switchboard.realtime")

SESSION_EVENTS = frozenset({"session.revoke", "session.revoke_token", "session.disconnect"})


async def worker_channel() -> str:
    """The name of this worker's channel (named on first use)."""
    fanout = hub().room_fanout
    await fanout.start()
    assert fanout.channel_name is not None
    return fanout.channel_name


class UserSessions:
    """The sessions open on this worker (one event loop), by user and by id."""

    def __init__(self, health: LayerHealth) -> None:
        self.health = health
        self.users: dict[int, dict[str, SessionConsumer]] = {}
        self.sessions: dict[str, SessionConsumer] = {}
        self.joined: set[int] = set()  # users whose group holds the worker channel
        self._locks = KeyedLocks()

    # -- membership ---------------------------------------------------------------------

    async def join(self, session: "SessionConsumer") -> bool:
        """Reach `session` through its user's group from now on; whether the group holds
        the worker channel (False: the layer failed or is down; its recovery renews the
        groups of every user with a session here)."""
        user_id = session.user.pk
        self.users.setdefault(user_id, {})[session.session_id] = session
        self.sessions[session.session_id] = session
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
                    fanout = hub().room_fanout
                    await fanout.layer.group_discard(group, await worker_channel())

        await self.health.leave_now_or_later(discard, group)

    async def _group_add(self, user_id: int, *, renew: bool) -> bool:
        group = user_group(user_id)
        if not self.health.available_for(group):
            return False
        try:
            channel = await worker_channel()
            async with self._locks.hold(group):
                if user_id in self.users and (renew or user_id not in self.joined):
                    await hub().room_fanout.layer.group_add(group, channel)
                    self.joined.add(user_id)
        except Exception as e:
            self.health.failed("group_add", e, group)
            return False
        return True

    async def groups_renew(self) -> None:
        """Add the worker channel again to the group of every user with a session here:
        after an outage (Redis may have forgotten them) and before CHANNEL_GROUP_EXPIRY."""
        for user_id in sorted(self.users):
            await self._group_add(user_id, renew=True)

    # -- events (the room fan-out's `WorkerEvents`) ---------------------------------------

    def handles(self, event: dict[str, Any]) -> bool:
        return event.get("type") in SESSION_EVENTS

    async def deliver(self, event: dict[str, Any]) -> None:
        """Hand a session event to the session it names, or to every session here of the
        user it names."""
        session_id = event.get("session_id")
        if session_id is not None:
            session = self.sessions.get(session_id)
            targets = [] if session is None else [session]
        elif isinstance(event.get("user_id"), int):
            targets = list(self.users.get(event["user_id"], {}).values())
        else:
            logger.warning("worker channel: a %s event named no user or session", event["type"])
            return
        for session in targets:
            hub().spawn(session.dispatch(event))
