"""Rooms on `/ws/session/`: subscribe, unsubscribe, publish, presence, policy, limits, outages."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import transaction

from accounts.models import User
from realtime import events
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.rooms.policy import channel_policy
from tests.conftest import UserFactory, access_for
from tests.unit.realtime.test_outages import UNREACHABLE_REDIS
from tests.unit.realtime.ws import assert_closed

pytestmark = pytest.mark.django_db(transaction=True)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")

# What a replacement policy (REALTIME_CHANNEL_POLICY) was asked, in order.
policy_calls: list[tuple[int, str, str]] = []


def read_only_policy(*, user, channel: str, action: str) -> bool:
    """A replacement policy: anyone may subscribe to and look at any room, nobody publishes."""
    policy_calls.append((user.pk, channel, action))
    return action != "publish"


@pytest.fixture(autouse=True)
def fresh_rooms_state():
    """The cached policy is process-wide: reset it (presence and the layer's health are the
    test's own hub's: `worker_hub`)."""
    channel_policy.cache_clear()
    policy_calls.clear()
    yield
    channel_policy.cache_clear()


@pytest.fixture
def fast_clients(settings):
    """Clients that may send hundreds of frames at once (set before their sockets open)."""
    settings.WS_MESSAGES_PER_SECOND = 1000.0
    settings.WS_MESSAGE_BURST = 1000


async def session_for(connect, user: User) -> WebsocketCommunicator:
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    welcome = await socket.receive_json_from()
    assert welcome["type"] == "welcome", welcome
    return socket


async def exchange(socket: WebsocketCommunicator, message) -> dict:
    """Send one frame (a JSON value, or raw text) and read one JSON reply."""
    text = message if isinstance(message, str) else json.dumps(message)
    await socket.send_to(text_data=text)
    return await socket.receive_json_from()


def error(code: ErrorCode, msg_id=None) -> dict:
    frame = {"type": "error", "code": str(code), "message": code.message}
    if msg_id is not None:
        frame["id"] = msg_id
    return frame


def sender(user: User) -> dict:
    return {"id": user.pk, "username": user.username}


def delivered(frame: dict, *, after: datetime, before: datetime) -> dict:
    """A message frame without its `ts`, once `ts` is checked: ISO 8601 UTC, in the window."""
    ts = frame["ts"]
    assert ISO_UTC.match(ts), ts
    sent = datetime.fromisoformat(ts)
    assert sent.utcoffset() == timedelta(0)
    slack = timedelta(milliseconds=1)
    assert after - slack <= sent <= before + slack, (after, ts, before)
    return {key: value for key, value in frame.items() if key != "ts"}


def request(kind: str, channel, msg_id=None) -> dict:
    """A subscribe, unsubscribe, publish (data 1) or presence message."""
    message = {"type": kind, "channel": channel}
    if kind == "publish":
        message["data"] = 1
    if msg_id is not None:
        message["id"] = msg_id
    return message


async def subscribed(socket: WebsocketCommunicator, channel: str) -> None:
    assert await exchange(socket, {"type": "subscribe", "channel": channel}) == {
        "type": "subscribed",
        "channel": channel,
    }


# -- subscribe, unsubscribe ---------------------------------------------------------------


async def test_subscribe_answers_subscribed_with_the_channel_and_the_id(connect, user):
    socket = await session_for(connect, user)

    reply = await exchange(socket, {"type": "subscribe", "channel": "lobby", "id": "s1"})

    assert reply == {"type": "subscribed", "channel": "lobby", "id": "s1"}
    assert await socket.receive_nothing(0.05)


async def test_subscribing_twice_is_idempotent_one_message_one_presence_entry(connect, user):
    socket = await session_for(connect, user)

    first = await exchange(socket, {"type": "subscribe", "channel": "lobby", "id": 1})
    second = await exchange(socket, {"type": "subscribe", "channel": "lobby", "id": 2})
    await socket.send_json_to({"type": "publish", "channel": "lobby", "data": "once"})

    assert first == {"type": "subscribed", "channel": "lobby", "id": 1}
    assert second == {"type": "subscribed", "channel": "lobby", "id": 2}
    assert await socket.receive_json_from() == {"type": "published", "channel": "lobby"}
    message = await socket.receive_json_from()
    assert (message["type"], message["data"]) == ("message", "once")
    assert await socket.receive_nothing(0.1)
    assert await exchange(socket, {"type": "presence", "channel": "lobby"}) == {
        "type": "presence",
        "channel": "lobby",
        "users": [sender(user)],
    }


async def test_unsubscribe_answers_unsubscribed_and_no_more_messages_arrive(
    connect, user, other_user
):
    leaving = await session_for(connect, user)
    staying = await session_for(connect, other_user)
    await subscribed(leaving, "lobby")
    await subscribed(staying, "lobby")

    reply = await exchange(leaving, {"type": "unsubscribe", "channel": "lobby", "id": "u1"})
    assert await exchange(staying, {"type": "publish", "channel": "lobby", "data": 1}) == {
        "type": "published",
        "channel": "lobby",
    }

    assert reply == {"type": "unsubscribed", "channel": "lobby", "id": "u1"}
    message = await staying.receive_json_from()
    assert (message["type"], message["data"]) == ("message", 1)  # it was sent to the room
    assert await leaving.receive_nothing(0.1)
    assert await exchange(staying, {"type": "presence", "channel": "lobby"}) == {
        "type": "presence",
        "channel": "lobby",
        "users": [sender(other_user)],
    }


async def test_unsubscribing_from_a_room_never_joined_answers_unsubscribed(connect, user):
    socket = await session_for(connect, user)

    reply = await exchange(socket, {"type": "unsubscribe", "channel": "never", "id": 3})

    assert reply == {"type": "unsubscribed", "channel": "never", "id": 3}


# -- publish --------------------------------------------------------------------------------


async def test_publish_reaches_every_subscriber_the_publisher_too_and_no_one_else(
    connect, user, other_user
):
    outsider_user = await sync_to_async(UserFactory)(username="carol")
    publisher = await session_for(connect, user)
    subscriber = await session_for(connect, other_user)
    outsider = await session_for(connect, outsider_user)
    await subscribed(publisher, "lobby")
    await subscribed(subscriber, "lobby")
    await subscribed(outsider, "elsewhere")
    data = {"text": "hello", "n": [1, 2.5, None, True], "nested": {"k": "v"}}

    before = datetime.now(UTC)
    reply = await exchange(
        publisher, {"type": "publish", "channel": "lobby", "data": data, "id": "p1"}
    )
    to_subscriber = await subscriber.receive_json_from()
    to_publisher = await publisher.receive_json_from()
    after = datetime.now(UTC)

    expected = {"type": "message", "channel": "lobby", "data": data, "from": sender(user)}
    assert reply == {"type": "published", "channel": "lobby", "id": "p1"}
    assert delivered(to_subscriber, after=before, before=after) == expected
    assert delivered(to_publisher, after=before, before=after) == expected
    assert to_subscriber["ts"] == to_publisher["ts"]  # one event, stamped once
    assert await outsider.receive_nothing(0.1)
    assert await publisher.receive_nothing(0.05)
    assert await subscriber.receive_nothing(0.05)


async def test_a_publisher_need_not_be_subscribed_and_then_gets_only_published(
    connect, user, other_user
):
    publisher = await session_for(connect, user)
    subscriber = await session_for(connect, other_user)
    await subscribed(subscriber, "lobby")

    reply = await exchange(publisher, {"type": "publish", "channel": "lobby", "data": None})

    assert reply == {"type": "published", "channel": "lobby"}
    message = await subscriber.receive_json_from()
    assert (message["data"], message["from"]) == (None, sender(user))
    assert await publisher.receive_nothing(0.1)


async def test_200_messages_from_one_publisher_arrive_in_order(
    connect, user, other_user, fast_clients
):
    publisher = await session_for(connect, user)
    subscriber = await session_for(connect, other_user)
    await subscribed(subscriber, "ordered")

    for n in range(200):
        await publisher.send_json_to({"type": "publish", "channel": "ordered", "data": n, "id": n})
    replies = [await publisher.receive_json_from() for _ in range(200)]
    messages = [await subscriber.receive_json_from() for _ in range(200)]

    assert replies == [{"type": "published", "channel": "ordered", "id": n} for n in range(200)]
    assert [(m["type"], m["channel"], m["data"]) for m in messages] == [
        ("message", "ordered", n) for n in range(200)
    ]
    assert {json.dumps(m["from"]) for m in messages} == {json.dumps(sender(user))}
    assert await subscriber.receive_nothing(0.1)


# -- presence -------------------------------------------------------------------------------


async def test_presence_lists_distinct_users_sorted_by_id(connect, user, other_user):
    # bob subscribes first; alice (the lower id) has two sessions in the room.
    assert user.pk < other_user.pk
    bob = await session_for(connect, other_user)
    alice_1 = await session_for(connect, user)
    alice_2 = await session_for(connect, user)
    for socket in (bob, alice_1, alice_2):
        await subscribed(socket, "lobby")

    reply = await exchange(bob, {"type": "presence", "channel": "lobby", "id": "who"})

    assert reply == {
        "type": "presence",
        "channel": "lobby",
        "users": [{"id": user.pk, "username": "alice"}, {"id": other_user.pk, "username": "bob"}],
        "id": "who",
    }


async def test_presence_of_an_empty_room_is_an_empty_list(connect, user):
    socket = await session_for(connect, user)

    reply = await exchange(socket, {"type": "presence", "channel": "empty"})

    assert reply == {"type": "presence", "channel": "empty", "users": []}


async def test_presence_drops_a_user_once_their_socket_disconnects(connect, user, other_user):
    alice = await session_for(connect, user)
    bob = await session_for(connect, other_user)
    await subscribed(alice, "lobby")
    await subscribed(bob, "lobby")
    assert await exchange(alice, {"type": "presence", "channel": "lobby"}) == {
        "type": "presence",
        "channel": "lobby",
        "users": [sender(user), sender(other_user)],
    }

    await bob.disconnect()

    assert await exchange(alice, {"type": "presence", "channel": "lobby"}) == {
        "type": "presence",
        "channel": "lobby",
        "users": [sender(user)],
    }


async def test_a_user_with_two_sessions_stays_present_until_the_last_one_leaves(
    connect, user, other_user
):
    watcher = await session_for(connect, other_user)
    first = await session_for(connect, user)
    second = await session_for(connect, user)
    await subscribed(first, "lobby")
    await subscribed(second, "lobby")

    await first.disconnect()
    after_one = await exchange(watcher, {"type": "presence", "channel": "lobby"})
    await second.send_json_to({"type": "unsubscribe", "channel": "lobby"})
    assert await second.receive_json_from() == {"type": "unsubscribed", "channel": "lobby"}
    after_both = await exchange(watcher, {"type": "presence", "channel": "lobby"})

    assert after_one == {"type": "presence", "channel": "lobby", "users": [sender(user)]}
    assert after_both == {"type": "presence", "channel": "lobby", "users": []}


# -- channel names --------------------------------------------------------------------------

BAD_NAMES = {
    "empty": "",
    "81 characters": "a" * 81,
    "a space": "two words",
    "a slash": "room/1",
    "unicode": "café",
    "a newline": "lobby\n",
}


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish", "presence"])
@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_an_invalid_channel_name_answers_invalid_channel_and_keeps_the_session(
    connect, user, kind, name
):
    socket = await session_for(connect, user)
    reply = await exchange(socket, request(kind, name, "bad"))

    assert reply == error(ErrorCode.INVALID_CHANNEL, "bad")
    assert await exchange(socket, {"type": "ping", "id": 2}) == {"type": "pong", "id": 2}


async def test_a_name_of_80_allowed_characters_is_valid(connect, user):
    socket = await session_for(connect, user)
    name = ("Az09_.-" * 12)[:80]

    reply = await exchange(socket, {"type": "subscribe", "channel": name})

    assert reply == {"type": "subscribed", "channel": name}


@pytest.mark.parametrize(
    ("channel", "got"), [(7, "int"), (None, "null"), (["lobby"], "array"), ({"a": 1}, "object")]
)
async def test_a_channel_that_is_not_a_string_answers_invalid_message(connect, user, channel, got):
    socket = await session_for(connect, user)

    reply = await exchange(socket, {"type": "subscribe", "channel": channel, "id": 4})

    assert reply == {
        "type": "error",
        "code": "invalid_message",
        "message": f"Expected `str`, got `{got}` - at `$.channel`",
        "id": 4,
    }
    assert await exchange(socket, {"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"type": "subscribe"}, "Object missing required field `channel`"),
        ({"type": "publish", "channel": "lobby"}, "Object missing required field `data`"),
        (
            {"type": "presence", "channel": "lobby", "extra": 1},
            "Object contains unknown field `extra`",
        ),
    ],
)
async def test_a_malformed_room_message_answers_invalid_message(connect, user, message, text):
    socket = await session_for(connect, user)

    reply = await exchange(socket, message)

    assert reply == {"type": "error", "code": "invalid_message", "message": text}


# -- policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["subscribe", "publish", "presence"])
async def test_a_user_may_use_their_own_user_channel(connect, user, kind):
    socket = await session_for(connect, user)
    channel = f"user.{user.pk}"

    reply = await exchange(socket, request(kind, channel, 5))

    expected = {"subscribe": "subscribed", "publish": "published", "presence": "presence"}
    assert (reply["type"], reply["channel"], reply["id"]) == (expected[kind], channel, 5)


@pytest.mark.parametrize("kind", ["subscribe", "publish", "presence"])
async def test_another_users_user_channel_is_forbidden(connect, user, other_user, kind):
    socket = await session_for(connect, user)
    reply = await exchange(socket, request(kind, f"user.{other_user.pk}", "x"))

    assert reply == error(ErrorCode.FORBIDDEN, "x")
    assert await exchange(socket, {"type": "ping"}) == {"type": "pong"}


async def test_a_forbidden_publish_reaches_nobody(connect, user, other_user):
    owner = await session_for(connect, other_user)
    intruder = await session_for(connect, user)
    await subscribed(owner, f"user.{other_user.pk}")

    reply = await exchange(
        intruder, {"type": "publish", "channel": f"user.{other_user.pk}", "data": "psst"}
    )

    assert reply == error(ErrorCode.FORBIDDEN)
    assert await owner.receive_nothing(0.1)


@pytest.mark.parametrize("kind", ["subscribe", "publish", "presence"])
async def test_staff_channels_are_forbidden_to_non_staff(connect, user, kind):
    socket = await session_for(connect, user)

    reply = await exchange(socket, request(kind, "staff.ops", 6))

    assert reply == error(ErrorCode.FORBIDDEN, 6)


@pytest.mark.parametrize("kind", ["subscribe", "publish", "presence"])
async def test_staff_channels_are_allowed_to_staff(connect, kind):
    staff = await sync_to_async(UserFactory)(username="root", is_staff=True)
    socket = await session_for(connect, staff)

    reply = await exchange(socket, request(kind, "staff.ops", 6))

    expected = {"subscribe": "subscribed", "publish": "published", "presence": "presence"}
    assert (reply["type"], reply["channel"], reply["id"]) == (expected[kind], "staff.ops", 6)


async def test_a_replacement_policy_named_in_settings_decides_every_action(
    connect, user, other_user, settings
):
    settings.REALTIME_CHANNEL_POLICY = f"{__name__}.read_only_policy"
    socket = await session_for(connect, user)
    other_users_channel = f"user.{other_user.pk}"  # the default policy would refuse it

    subscribe = await exchange(socket, {"type": "subscribe", "channel": other_users_channel})
    publish = await exchange(socket, {"type": "publish", "channel": "lobby", "data": 1})
    look = await exchange(socket, {"type": "presence", "channel": other_users_channel})

    assert subscribe == {"type": "subscribed", "channel": other_users_channel}
    assert publish == error(ErrorCode.FORBIDDEN)
    assert look == {"type": "presence", "channel": other_users_channel, "users": [sender(user)]}
    assert policy_calls == [
        (user.pk, other_users_channel, "subscribe"),
        (user.pk, "lobby", "publish"),
        (user.pk, other_users_channel, "presence"),
    ]


async def test_a_policy_is_not_asked_about_invalid_names_or_unsubscribe(connect, user, settings):
    settings.REALTIME_CHANNEL_POLICY = f"{__name__}.read_only_policy"
    socket = await session_for(connect, user)

    invalid = await exchange(socket, {"type": "subscribe", "channel": "no spaces"})
    leave = await exchange(socket, {"type": "unsubscribe", "channel": "lobby"})

    assert invalid == error(ErrorCode.INVALID_CHANNEL)
    assert leave == {"type": "unsubscribed", "channel": "lobby"}
    assert policy_calls == []


# -- limits ---------------------------------------------------------------------------------


async def test_one_subscription_past_ws_max_subscriptions_is_refused(connect, user, settings):
    settings.WS_MAX_SUBSCRIPTIONS = 2
    socket = await session_for(connect, user)
    await subscribed(socket, "one")
    await subscribed(socket, "two")

    third = await exchange(socket, {"type": "subscribe", "channel": "three", "id": 3})
    again = await exchange(socket, {"type": "subscribe", "channel": "one", "id": 4})
    await exchange(socket, {"type": "unsubscribe", "channel": "two"})
    after_leaving = await exchange(socket, {"type": "subscribe", "channel": "three", "id": 5})

    assert third == error(ErrorCode.TOO_MANY_SUBSCRIPTIONS, 3)
    assert again == {"type": "subscribed", "channel": "one", "id": 4}  # already a member
    assert after_leaving == {"type": "subscribed", "channel": "three", "id": 5}


async def test_a_refused_subscription_joins_nothing(connect, user, other_user, settings):
    settings.WS_MAX_SUBSCRIPTIONS = 1
    socket = await session_for(connect, user)
    publisher = await session_for(connect, other_user)
    await subscribed(socket, "one")

    assert await exchange(socket, {"type": "subscribe", "channel": "two"}) == error(
        ErrorCode.TOO_MANY_SUBSCRIPTIONS
    )
    await exchange(publisher, {"type": "publish", "channel": "two", "data": 1})

    assert await socket.receive_nothing(0.1)
    assert await exchange(publisher, {"type": "presence", "channel": "two"}) == {
        "type": "presence",
        "channel": "two",
        "users": [],
    }


async def test_publishing_counts_against_the_message_rate_limit(connect, user, settings):
    settings.WS_MESSAGES_PER_SECOND = 0.001
    settings.WS_MESSAGE_BURST = 2
    socket = await session_for(connect, user)

    first = await exchange(socket, {"type": "publish", "channel": "lobby", "data": 1})
    second = await exchange(socket, {"type": "publish", "channel": "lobby", "data": 2})
    third = await exchange(socket, {"type": "publish", "channel": "lobby", "data": 3})

    assert [first, second] == [{"type": "published", "channel": "lobby"}] * 2
    assert third == error(ErrorCode.RATE_LIMITED)


async def test_21_invalid_channel_errors_within_a_minute_close_the_session_1008(
    connect, user, fast_clients
):
    socket = await session_for(connect, user)

    replies = []
    for n in range(20):
        kind = ["subscribe", "unsubscribe", "presence"][n % 3]
        replies.append(await exchange(socket, {"type": kind, "channel": "", "id": n}))
    assert replies == [error(ErrorCode.INVALID_CHANNEL, n) for n in range(20)]
    assert await exchange(socket, {"type": "ping"}) == {"type": "pong"}

    assert await exchange(socket, {"type": "subscribe", "channel": "a b", "id": 20}) == error(
        ErrorCode.INVALID_CHANNEL, 20
    )
    await assert_closed(socket, CloseCode.POLICY_VIOLATION)


# -- server publish -------------------------------------------------------------------------


async def test_server_code_publishes_with_from_null(connect, user):
    socket = await session_for(connect, user)
    await subscribed(socket, "news")

    before = datetime.now(UTC)
    await sync_to_async(events.publish)("news", {"headline": "hi"})
    frame = await socket.receive_json_from()
    after = datetime.now(UTC)

    assert delivered(frame, after=before, before=after) == {
        "type": "message",
        "channel": "news",
        "data": {"headline": "hi"},
        "from": None,
    }
    assert await socket.receive_nothing(0.05)


async def test_server_code_is_not_subject_to_the_policy(connect, user):
    socket = await session_for(connect, user)
    await subscribed(socket, f"user.{user.pk}")

    await sync_to_async(events.publish)(f"user.{user.pk}", "for you")

    frame = await socket.receive_json_from()
    assert (frame["channel"], frame["data"], frame["from"]) == (f"user.{user.pk}", "for you", None)


def publish_in_transactions() -> None:
    """One publish rolled back, then one committed."""
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish("news", "rolled back")
        raise RuntimeError("rollback")
    with transaction.atomic():
        events.publish("news", "committed")


async def test_server_publish_waits_for_the_commit_and_a_rollback_sends_nothing(connect, user):
    socket = await session_for(connect, user)
    await subscribed(socket, "news")

    await sync_to_async(publish_in_transactions)()

    frame = await socket.receive_json_from()
    assert (frame["data"], frame["from"]) == ("committed", None)
    assert await socket.receive_nothing(0.1)


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_server_publish_to_an_invalid_name_raises_value_error(name):
    with pytest.raises(ValueError, match=r"^invalid channel name: ") as raised:
        events.publish(name, "x")

    assert str(raised.value) == f"invalid channel name: {name[:80]!r}"


# -- channel layer outage -------------------------------------------------------------------


@pytest.fixture
def unreachable_redis(settings):
    """Both the channel layer and presence point at a Redis nobody listens on (the test's hub
    builds its presence store on first use, from these settings)."""
    settings.CHANNEL_LAYERS = UNREACHABLE_REDIS
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.mark.parametrize("kind", ["subscribe", "publish", "presence"])
async def test_an_unreachable_layer_answers_unavailable_with_the_id_and_keeps_the_session(
    connect, user, unreachable_redis, kind, worker_hub
):
    socket = await session_for(connect, user)

    reply = await exchange(socket, request(kind, "lobby", "o1"))

    assert reply == error(ErrorCode.UNAVAILABLE, "o1")
    assert await exchange(socket, {"type": "ping", "id": 2}) == {"type": "pong", "id": 2}
    assert worker_hub.health.available is False


async def test_25_unavailable_errors_do_not_close_the_session(
    connect, user, unreachable_redis, fast_clients
):
    socket = await session_for(connect, user)

    replies = []
    for n in range(25):
        kind = ["subscribe", "publish", "presence"][n % 3]
        replies.append(await exchange(socket, request(kind, "c", n)))

    assert replies == [error(ErrorCode.UNAVAILABLE, n) for n in range(25)]
    assert await exchange(socket, {"type": "ping", "id": "alive"}) == {
        "type": "pong",
        "id": "alive",
    }
    assert await socket.receive_nothing(0.1)


async def test_a_subscription_refused_as_unavailable_is_not_kept(
    connect, user, unreachable_redis, settings
):
    settings.WS_MAX_SUBSCRIPTIONS = 1
    socket = await session_for(connect, user)

    first = await exchange(socket, {"type": "subscribe", "channel": "a"})
    second = await exchange(socket, {"type": "subscribe", "channel": "b"})

    # Neither failed attempt took the one slot: both are unavailable, not too_many.
    assert [first, second] == [error(ErrorCode.UNAVAILABLE)] * 2
