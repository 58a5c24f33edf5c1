"""A session's groups: its user's group (where revocations arrive, through this worker's
channel: `realtime.session.user_groups`), the rooms it subscribed to (through this worker's
room fan-out) and its presence in them."""

from typing import TYPE_CHECKING

from realtime.hub import hub
from realtime.rooms.namespaces import namespace_of

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer


async def groups_join(session: "SessionConsumer") -> bool:
    """Be reached through the user's group, and renew this session's presence in every
    subscribed room (after an outage Redis may have lost it; the worker's room fan-out
    renews the room and user groups itself); whether it joined. Failures are recorded, not
    raised. While the layer is known to be down this waits for nothing: recovery rejoins."""
    if not await hub().user_sessions.join(session):
        return False
    try:
        for channel in list(session.rooms):
            if namespace_of(channel).presence:
                await presence_add(session, channel)
    except Exception as e:
        hub().health.failed("group_add", e)
        return False
    return True


def _user(session: "SessionConsumer") -> tuple[int, str]:
    return (session.user.pk, session.user.username)


async def presence_add(session: "SessionConsumer", channel: str) -> bool:
    """Be present in `channel`; whether this is the user's first session there."""
    return await hub().presence.add(channel, session.session_id, _user(session))


async def room_join(session: "SessionConsumer", channel: str, *, hold: bool = False) -> None:
    """Receive the room's messages (through this worker's fan-out; with `hold`, kept until
    the fan-out's `release`) and be present in it, where its namespace keeps presence (the
    user's first session there announces a join, where it has join/leave events)."""
    await hub().room_fanout.subscribe(channel, session, session.room_send, hold=hold)
    namespace = namespace_of(channel)
    if namespace.presence and await presence_add(session, channel) and namespace.join_leave:
        await hub().room_fanout.member_event("join", channel, _user(session))


async def room_leave(session: "SessionConsumer", channel: str) -> None:
    """Leave a room: its messages stop (the fan-out's group discard waits for the room's
    shard when that is down), and its presence goes, whatever the layer's state: presence
    lives in REDIS_URL's Redis, and retries there a removal it could not make. The user's
    last session there announces a leave, where its namespace has join/leave events."""
    await hub().room_fanout.unsubscribe(channel, session)
    namespace = namespace_of(channel)
    if not namespace.presence:
        return
    user = _user(session)
    if await hub().presence.remove(channel, session.session_id, user) and namespace.join_leave:
        await hub().room_fanout.member_event("leave", channel, user)


async def groups_leave(session: "SessionConsumer") -> None:
    """Leave every room and the user's group (the session is gone)."""
    hub().health.unregister(session)
    for channel in list(session.rooms):
        await room_leave(session, channel)
    session.rooms.clear()
    await hub().user_sessions.leave(session)
