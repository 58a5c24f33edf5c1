"""Namespaces on `/ws/session/` (in-memory layer and history, one process): offsets and
epochs, recovery with `since`, the `history` request, publishing rules, join and leave."""

import pytest
from asgiref.sync import sync_to_async

from realtime import events
from realtime.protocol.codes import ErrorCode
from tests.conftest import UserFactory
from tests.unit.realtime.test_rooms import error, exchange, sender, session_for

pytestmark = pytest.mark.django_db(transaction=True)

NAMESPACES = {
    "log": {"history_size": 3, "history_ttl": 60},
    "chat": {"history_size": 3, "history_ttl": 60, "join_leave": True},
    "alerts": {"history_size": 5, "history_ttl": 60, "publish": "server"},
    "news": {"history_size": 5, "history_ttl": 60, "publish": "staff"},
    "quiet": {"presence": False},
}


@pytest.fixture(autouse=True)
def namespaces(settings):
    settings.REALTIME_NAMESPACES = NAMESPACES


async def subscribe(socket, channel: str, **fields) -> dict:
    return await exchange(socket, {"type": "subscribe", "channel": channel, **fields})


async def publish(socket, channel: str, data) -> dict:
    return await exchange(socket, {"type": "publish", "channel": channel, "data": data})


def without_ts(frame: dict) -> dict:
    return {key: value for key, value in frame.items() if key != "ts"}


def message(channel: str, data, offset: int, epoch: str, user=None) -> dict:
    frame = {"type": "message", "channel": channel, "data": data}
    frame["from"] = None if user is None else sender(user)
    return {**frame, "offset": offset, "epoch": epoch}


async def test_a_room_with_history_numbers_its_messages_from_one_in_one_epoch(connect, user):
    socket = await session_for(connect, user)

    first = await subscribe(socket, "log.a")
    epoch = first["epoch"]
    published = await publish(socket, "log.a", "hi")
    frame = await socket.receive_json_from()
    await publish(socket, "log.a", "again")
    second = await socket.receive_json_from()

    assert first == {"type": "subscribed", "channel": "log.a", "offset": 0, "epoch": epoch}
    assert published == {"type": "published", "channel": "log.a", "offset": 1, "epoch": epoch}
    assert list(frame) == ["type", "channel", "data", "ts", "from", "offset", "epoch"]
    assert without_ts(frame) == message("log.a", "hi", 1, epoch, user)
    assert (second["offset"], second["epoch"]) == (2, epoch)


async def test_a_resubscribe_since_its_last_offset_gets_what_it_missed_then_live_ones(
    connect, user, other_user
):
    publisher = await session_for(connect, other_user)
    epoch = (await subscribe(publisher, "log.a"))["epoch"]
    await publish(publisher, "log.a", 1)
    await publisher.receive_json_from()
    for data in (2, 3):
        await publish(publisher, "log.a", data)
        await publisher.receive_json_from()
    reader = await session_for(connect, user)

    reply = await subscribe(reader, "log.a", since={"offset": 1, "epoch": epoch})
    replayed = [without_ts(await reader.receive_json_from()) for _ in range(2)]
    await publish(publisher, "log.a", 4)
    live = without_ts(await reader.receive_json_from())

    expected = {"type": "subscribed", "channel": "log.a", "recovered": True}
    assert reply == {**expected, "offset": 3, "epoch": epoch}
    assert replayed == [
        message("log.a", 2, 2, epoch, other_user),
        message("log.a", 3, 3, epoch, other_user),
    ]
    assert live == message("log.a", 4, 4, epoch, other_user)
    assert await reader.receive_nothing(0.05)


@pytest.mark.parametrize(
    ("since", "why"),
    [
        ({"offset": 0, "epoch": "another"}, "another epoch"),
        ({"offset": 0, "epoch": None}, "trimmed: history_size 3 of 4 messages"),
        ({"offset": 9, "epoch": None}, "beyond the latest offset"),
    ],
)
async def test_a_resubscribe_the_history_cannot_cover_is_told_and_replays_nothing(
    connect, user, other_user, since, why
):
    publisher = await session_for(connect, other_user)
    epoch = (await subscribe(publisher, "log.a"))["epoch"]
    for data in range(4):
        await publish(publisher, "log.a", data)
        await publisher.receive_json_from()
    reader = await session_for(connect, user)

    reply = await subscribe(reader, "log.a", since={**since, "epoch": since["epoch"] or epoch})

    assert reply == {
        "type": "subscribed",
        "channel": "log.a",
        "recovered": False,
        "offset": 4,
        "epoch": epoch,
    }, why
    assert await reader.receive_nothing(0.05)


async def test_since_in_a_room_without_history_answers_not_recovered(connect, user):
    socket = await session_for(connect, user)

    reply = await subscribe(socket, "lobby", since={"offset": 3, "epoch": "x"})

    assert reply == {"type": "subscribed", "channel": "lobby", "recovered": False}


async def test_history_answers_the_last_messages_oldest_first(connect, user):
    socket = await session_for(connect, user)
    epoch = (await subscribe(socket, "log.a"))["epoch"]
    for data in "abcd":
        await publish(socket, "log.a", data)
        await socket.receive_json_from()

    two = await exchange(socket, {"type": "history", "channel": "log.a", "limit": 2, "id": 5})
    every = await exchange(socket, {"type": "history", "channel": "log.a", "limit": 99})

    assert [without_ts(m) for m in two["messages"]] == [
        message("log.a", "c", 3, epoch, user),
        message("log.a", "d", 4, epoch, user),
    ]
    assert {k: v for k, v in two.items() if k != "messages"} == {
        "type": "history",
        "channel": "log.a",
        "offset": 4,
        "epoch": epoch,
        "id": 5,
    }
    assert [m["data"] for m in every["messages"]] == ["b", "c", "d"]  # history_size 3


async def test_history_in_a_room_without_it_is_history_unavailable(connect, user):
    socket = await session_for(connect, user)

    reply = await exchange(socket, {"type": "history", "channel": "lobby", "id": 1})

    assert reply == error(ErrorCode.HISTORY_UNAVAILABLE, 1)
    assert reply["message"] == "This channel keeps no history"


async def test_publishing_follows_the_namespaces_rule(connect, user):
    staff = await sync_to_async(UserFactory)(username="carol", is_staff=True)
    member = await session_for(connect, user)
    editor = await session_for(connect, staff)

    unsubscribed = await exchange(
        member, {"type": "publish", "channel": "log.a", "data": 1, "id": 1}
    )
    to_alerts = await exchange(member, {"type": "publish", "channel": "alerts.x", "data": 1})
    staff_to_alerts = await exchange(editor, {"type": "publish", "channel": "alerts.x", "data": 1})
    to_news = await exchange(member, {"type": "publish", "channel": "news.x", "data": 1})
    staff_to_news = await exchange(editor, {"type": "publish", "channel": "news.x", "data": 1})

    assert unsubscribed == error(ErrorCode.FORBIDDEN, 1)  # "subscribers": subscribe first
    assert to_alerts == staff_to_alerts == error(ErrorCode.FORBIDDEN)  # "server" only
    assert to_news == error(ErrorCode.FORBIDDEN)
    assert staff_to_news["type"] == "published"
    assert staff_to_news["offset"] == 1


async def test_server_side_publishing_returns_the_offset(connect, user):
    socket = await session_for(connect, user)
    epoch = (await subscribe(socket, "alerts.x"))["epoch"]

    offset = await sync_to_async(events.publish)("alerts.x", {"level": "high"})
    frame = without_ts(await socket.receive_json_from())
    none = await sync_to_async(events.publish)("lobby", 1)

    assert offset == 1
    assert frame == message("alerts.x", {"level": "high"}, 1, epoch)
    assert none is None  # a room without history


async def test_join_and_leave_come_with_a_users_first_and_last_session(connect, user, other_user):
    watcher = await session_for(connect, user)
    await subscribe(watcher, "chat.a")
    own_join = await watcher.receive_json_from()
    first = await session_for(connect, other_user)
    second = await session_for(connect, other_user)

    await subscribe(first, "chat.a")
    join = await watcher.receive_json_from()
    await subscribe(second, "chat.a")  # not bob's first session there: no join
    quiet_after_second = await watcher.receive_nothing(0.1)
    await exchange(first, {"type": "unsubscribe", "channel": "chat.a"})
    quiet_after_first_left = await watcher.receive_nothing(0.1)
    await second.disconnect()
    leave = await watcher.receive_json_from()

    bob = {"id": other_user.pk, "username": "bob"}
    assert own_join == {"type": "join", "channel": "chat.a", "user": sender(user)}
    assert join == {"type": "join", "channel": "chat.a", "user": bob}
    assert quiet_after_second and quiet_after_first_left
    assert leave == {"type": "leave", "channel": "chat.a", "user": bob}


async def test_presence_off_in_a_namespace_is_forbidden_and_rooms_outside_have_no_joins(
    connect, user, other_user
):
    socket = await session_for(connect, user)
    await subscribe(socket, "quiet.x")
    await subscribe(socket, "lobby")
    other = await session_for(connect, other_user)
    await subscribe(other, "lobby")

    reply = await exchange(socket, {"type": "presence", "channel": "quiet.x", "id": 2})

    assert reply == {
        "type": "error",
        "code": "forbidden",
        "message": "Presence is off in this channel's namespace",
        "id": 2,
    }
    assert await socket.receive_nothing(0.1)  # no join in a room outside join_leave


async def test_subscribing_again_answers_the_subscriptions_position_and_replays_nothing(
    connect, user
):
    socket = await session_for(connect, user)
    epoch = (await subscribe(socket, "log.a"))["epoch"]
    await publish(socket, "log.a", 1)
    await socket.receive_json_from()

    same = await subscribe(socket, "log.a", since={"offset": 1, "epoch": epoch})
    behind = await subscribe(socket, "log.a", since={"offset": 0, "epoch": epoch})

    position = {"type": "subscribed", "channel": "log.a", "offset": 1, "epoch": epoch}
    assert same == {**position, "recovered": True}
    assert behind == {**position, "recovered": False}
    assert await socket.receive_nothing(0.05)


@pytest.mark.parametrize(
    "since",
    [
        {"offset": -1, "epoch": "e"},
        {"offset": 1},
        {"offset": 1, "epoch": ""},
        5,
        {"offset": 1, "epoch": "x" * 65},
    ],
)
async def test_a_bad_since_is_an_invalid_message(connect, user, since):
    socket = await session_for(connect, user)

    reply = await subscribe(socket, "log.a", since=since, id=3)

    assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_message", 3)


def no_history_policy(*, user, channel: str, action: str) -> bool:
    """A replacement policy: everything but reading history."""
    return action != "history"


async def test_a_policy_that_refuses_history_refuses_the_replay_of_a_subscribe_too(
    connect, user, settings
):
    from realtime.rooms.policy import channel_policy

    settings.REALTIME_CHANNEL_POLICY = f"{__name__}.no_history_policy"
    channel_policy.cache_clear()
    try:
        socket = await session_for(connect, user)
        epoch = (await subscribe(socket, "log.a"))["epoch"]
        await publish(socket, "log.a", "secret")
        await socket.receive_json_from()
        await exchange(socket, {"type": "unsubscribe", "channel": "log.a"})

        asked = await exchange(socket, {"type": "history", "channel": "log.a", "id": 1})
        again = await subscribe(socket, "log.a", since={"offset": 0, "epoch": epoch})
    finally:
        channel_policy.cache_clear()

    assert asked == error(ErrorCode.FORBIDDEN, 1)
    assert again == {
        "type": "subscribed",
        "channel": "log.a",
        "recovered": False,
        "offset": 1,
        "epoch": epoch,
    }
    assert await socket.receive_nothing(0.05)


async def test_a_history_reply_holds_the_newest_messages_that_fit_in_one_frame(
    connect, user, settings
):
    settings.WS_MAX_MESSAGE_BYTES = 4096
    socket = await session_for(connect, user)
    await subscribe(socket, "log.a")
    for n in range(3):
        await publish(socket, "log.a", {"n": n, "pad": "x" * 1500})
        await socket.receive_json_from()

    reply = await exchange(socket, {"type": "history", "channel": "log.a"})

    assert [m["data"]["n"] for m in reply["messages"]] == [2]  # two would not fit in 3 KB
    assert reply["offset"] == 3
