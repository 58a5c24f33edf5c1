"""Room fan-out: one worker channel per room group, local subscribers kept by the worker."""

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from realtime import events
from realtime.rooms.overload import OVER_CAPACITY
from tests.conftest import UserFactory
from tests.unit.realtime.test_rooms import exchange, session_for, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def group_members(channel: str) -> set[str]:
    """The channels in a room's group of the in-memory layer."""
    return set(get_channel_layer().groups.get(f"room.{channel}", {}))


async def test_the_first_local_subscriber_adds_the_worker_channel_to_the_group_once(
    connect, user, other_user, worker_hub
):
    first = await session_for(connect, user)
    second = await session_for(connect, other_user)

    await subscribed(first, "lobby")
    worker_channel = worker_hub.room_fanout.channel_name
    after_first = group_members("lobby")
    await subscribed(second, "lobby")

    assert worker_channel.startswith("rooms.")
    assert after_first == {worker_channel}
    assert group_members("lobby") == {worker_channel}  # not one member per session
    assert worker_hub.room_fanout.joined == {"lobby"}
    assert len(worker_hub.room_fanout.rooms["lobby"].members) == 2


async def test_the_last_local_subscriber_out_takes_the_worker_channel_out(
    connect, user, other_user, worker_hub
):
    first = await session_for(connect, user)
    second = await session_for(connect, other_user)
    await subscribed(first, "lobby")
    await subscribed(second, "lobby")
    worker_channel = worker_hub.room_fanout.channel_name

    await exchange(first, {"type": "unsubscribe", "channel": "lobby"})
    after_one = group_members("lobby")
    await exchange(second, {"type": "unsubscribe", "channel": "lobby"})

    assert after_one == {worker_channel}
    assert group_members("lobby") == set()
    assert worker_hub.room_fanout.rooms == {}
    assert worker_hub.room_fanout.joined == set()


async def test_a_disconnect_leaves_every_room_and_the_last_one_empties_the_group(
    connect, user, other_user, worker_hub
):
    leaving = await session_for(connect, user)
    staying = await session_for(connect, other_user)
    await subscribed(leaving, "one")
    await subscribed(leaving, "two")
    await subscribed(staying, "two")
    worker_channel = worker_hub.room_fanout.channel_name

    await leaving.disconnect()

    assert group_members("one") == set()
    assert group_members("two") == {worker_channel}
    assert set(worker_hub.room_fanout.rooms) == {"two"}
    assert len(worker_hub.room_fanout.rooms["two"].members) == 1
    assert worker_hub.room_fanout.joined == {"two"}


async def test_one_message_reaches_every_local_subscriber_as_the_same_frame(connect, user):
    users = [user] + [await sync_to_async(UserFactory)() for _ in range(2)]
    sockets = [await session_for(connect, member) for member in users]
    for socket in sockets:
        await subscribed(socket, "news")
    sent_before = sample("switchboard_ws_messages_sent_total", endpoint="session", type="message")

    await sync_to_async(events.publish)("news", {"n": 1})
    frames = [await socket.receive_from() for socket in sockets]

    assert len(set(frames)) == 1
    assert frames[0].startswith('{"type":"message","channel":"news","data":{"n":1},"ts":"')
    assert frames[0].endswith('","from":null}')
    sent_after = sample("switchboard_ws_messages_sent_total", endpoint="session", type="message")
    assert sent_after == sent_before + 3


async def test_after_a_recovery_the_worker_channel_rejoins_each_room_once(
    connect, user, other_user, worker_hub
):
    first = await session_for(connect, user)
    second = await session_for(connect, other_user)
    await subscribed(first, "lobby")
    await subscribed(second, "lobby")
    layer = get_channel_layer()
    layer.groups.clear()  # what a restarted, empty Redis remembers

    await worker_hub.room_fanout_rejoin([])
    await sync_to_async(events.publish)("lobby", "back")

    assert group_members("lobby") == {worker_hub.room_fanout.channel_name}
    for socket in (first, second):
        frame = await socket.receive_json_from()
        assert (frame["channel"], frame["data"]) == ("lobby", "back")


async def test_a_send_that_fails_for_one_subscriber_is_counted_logged_and_spares_the_others(
    connect, user, other_user, caplog, worker_hub
):
    broken = await session_for(connect, user)
    fine = await session_for(connect, other_user)
    await subscribed(broken, "lobby")
    await subscribed(fine, "lobby")
    fanout = worker_hub.room_fanout

    async def fail(channel: str, text: str) -> None:
        raise ConnectionResetError("gone")

    subscriber = next(iter(fanout.rooms["lobby"].members))
    fanout.rooms["lobby"].members[subscriber].deliver = fail
    before = sample("switchboard_room_fanout_dropped_total", reason="send_failed")
    with caplog.at_level(logging.WARNING, logger="switchboard.realtime"):
        await sync_to_async(events.publish)("lobby", "x")
        frame = await fine.receive_json_from()

    assert frame["data"] == "x"
    assert sample("switchboard_room_fanout_dropped_total", reason="send_failed") == before + 1
    assert (
        "room fan-out: a message to room lobby not sent to one subscriber (ConnectionResetError)"
        in caplog.text
    )


def test_a_refused_room_write_is_counted_and_logged_instead_of_channels_redis_info(caplog):
    before = sample("switchboard_room_fanout_dropped_total", reason="worker_channel_full")
    source = logging.getLogger("channels_redis.core")

    with caplog.at_level(logging.INFO):
        source.info(OVER_CAPACITY, 1, 3, "room.lobby")
        source.info(OVER_CAPACITY, 1, 1, "sessions.user.7")  # not a room: left as it is

    after = sample("switchboard_room_fanout_dropped_total", reason="worker_channel_full")
    assert after == before + 1
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "switchboard.realtime",
            "WARNING",
            "room fan-out overload: a message to room lobby dropped for 1 of 3 worker(s), "
            "their channel full (WS_ROOM_FANOUT_CAPACITY=1000)",
        ),
        ("channels_redis.core", "INFO", "1 of 1 channels over capacity in group sessions.user.7"),
    ]


async def test_the_worker_channel_renews_its_rooms_before_the_group_expiry(
    connect, user, settings, worker_hub
):
    settings.CHANNEL_GROUP_EXPIRY = 0.4  # renewed every 0.1 s
    socket = await session_for(connect, user)
    await subscribed(socket, "lobby")
    get_channel_layer().groups.clear()  # as if the membership had lapsed

    await asyncio.sleep(0.3)

    assert group_members("lobby") == {worker_hub.room_fanout.channel_name}
