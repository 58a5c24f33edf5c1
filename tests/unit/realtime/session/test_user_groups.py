"""Sessions by user (`realtime.session.user_groups`): a user's group holds this worker's
channel once, however many of the user's sessions are open here, and the events sent to it
or to the worker channel reach exactly the sessions they name."""

import asyncio
import logging

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from realtime.events import user_group
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.unit.realtime.sessions import session_open
from tests.unit.realtime.test_rooms import subscribed
from tests.unit.realtime.ws import assert_error_then_closed

PONG = {"type": "pong", "id": 1}
ROOM_MESSAGE = {"type": "room.message", "channel": "lobby", "data": 1, "ts": 0, "from": None}


async def ping(socket) -> dict:
    await socket.send_json_to({"type": "ping", "id": 1})
    return await socket.receive_json_from()


async def test_the_users_group_holds_the_worker_channel_once_until_their_last_session_here_goes(
    connect, user, worker_hub
):
    layer = get_channel_layer()
    sockets = [(await session_open(connect, user))[0] for _ in range(3)]
    worker_channel = worker_hub.user_sessions.channel_name

    assert set(layer.groups[user_group(user.pk)]) == {worker_channel}
    for socket in sockets[:2]:
        await socket.disconnect()
    assert set(layer.groups[user_group(user.pk)]) == {worker_channel}
    assert await ping(sockets[2]) == PONG

    await sockets[2].disconnect()
    await asyncio.sleep(0)
    assert not layer.groups.get(user_group(user.pk))


async def test_a_session_holds_no_channel_of_its_own(connect, user, worker_hub):
    layer = get_channel_layer()
    await session_open(connect, user)

    # The in-memory layer makes a channel's queue on first use: only the worker's exists.
    assert set(layer.channels) <= {worker_hub.user_sessions.channel_name}


async def test_a_revocation_for_another_user_leaves_these_sessions_open(connect, user, other_user):
    socket, _ = await session_open(connect, user)
    await session_open(connect, other_user)

    await get_channel_layer().group_send(
        user_group(other_user.pk), {"type": "session.revoke", "user_id": other_user.pk}
    )

    assert await socket.receive_nothing(0.1)
    assert await ping(socket) == PONG


async def test_an_event_naming_no_user_nor_session_is_logged_and_closes_nothing(
    connect, user, worker_hub, caplog
):
    socket, _ = await session_open(connect, user)
    caplog.set_level(logging.WARNING, logger="switchboard.realtime")

    await get_channel_layer().send(
        worker_hub.user_sessions.channel_name, {"type": "session.disconnect"}
    )

    assert await socket.receive_nothing(0.1)
    assert await ping(socket) == PONG
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "worker channel: a session.disconnect event named no user or session"
    ]


async def test_after_an_outage_the_users_group_holds_the_worker_channel_again(
    connect, user, worker_hub
):
    socket, _ = await session_open(connect, user)
    layer = get_channel_layer()
    group = user_group(user.pk)
    await layer.group_discard(group, worker_hub.user_sessions.channel_name)  # Redis forgot it

    await worker_hub.health._rejoin_all()
    await layer.group_send(group, {"type": "session.revoke", "user_id": user.pk})

    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_an_idle_session_runs_no_task_but_its_own(connect, user):
    await session_open(connect, user)  # the worker's own tasks (fan-out, heartbeat) start
    before = len(asyncio.all_tasks())

    for _ in range(5):
        await session_open(connect, user)

    # Each: the application's task alone (no layer receive, no dispatch task, no timer).
    assert len(asyncio.all_tasks()) - before == 5


# -- what room traffic and a failing room group cannot do to revocations -------------------


async def test_a_revocation_reaches_a_session_while_room_traffic_fills_the_worker_channel(
    connect, user, worker_hub
):
    socket, _ = await session_open(connect, user)
    layer = get_channel_layer()
    channel = worker_hub.room_fanout.channel_name
    # A busy room: publishers fill the worker channel faster than its reader drains it
    # (the reader is paused here to make that deterministic on the in-memory layer).
    fanout = worker_hub.room_fanout
    await fanout.start()
    channel = fanout.channel_name
    reader = fanout._tasks[0]
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    try:
        while True:
            await layer.send(
                channel,
                {"type": "room.message", "channel": "lobby", "data": 1, "ts": 0, "from": None},
            )
    except ChannelFull:
        pass

    await layer.group_send(user_group(user.pk), {"type": "session.revoke", "user_id": user.pk})
    fanout._tasks[0] = asyncio.get_running_loop().create_task(fanout._receive_run())

    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_after_a_restart_the_users_group_is_renewed_even_when_one_room_group_fails(
    connect, user, worker_hub
):
    socket, _ = await session_open(connect, user)
    await subscribed(socket, "lobby")
    layer = get_channel_layer()
    group = user_group(user.pk)
    await layer.group_discard(group, worker_hub.room_fanout.channel_name)  # Redis forgot it
    group_add = layer.group_add

    async def busy_for_rooms(name, channel):
        if name.startswith("room."):
            raise RuntimeError("pool exhausted")  # Redis answers: not an outage
        await group_add(name, channel)

    layer.group_add = busy_for_rooms
    await worker_hub.health._rejoin_all()  # every session "rejoins"; the hooks renew
    layer.group_add = group_add

    await layer.group_send(group, {"type": "session.revoke", "user_id": user.pk})
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_a_renewal_racing_the_users_last_leave_leaves_no_group_behind(
    connect, user, worker_hub
):
    socket, _ = await session_open(connect, user)
    layer = get_channel_layer()
    group = user_group(user.pk)
    adding, release = asyncio.Event(), asyncio.Event()
    group_add = layer.group_add

    async def slow_add(name, channel):
        adding.set()
        await release.wait()
        await group_add(name, channel)

    layer.group_add = slow_add
    renewal = asyncio.ensure_future(worker_hub.user_sessions.groups_renew())
    await adding.wait()
    # The last session leaves while the renewal's add is on its way: its discard waits for
    # the renewal's lock.
    closing = asyncio.ensure_future(socket.disconnect())
    await asyncio.sleep(0.05)
    release.set()
    await renewal
    await closing
    layer.group_add = group_add

    assert not layer.groups.get(group)
    assert user.pk not in worker_hub.user_sessions.joined
