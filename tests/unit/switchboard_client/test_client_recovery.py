"""Rooms across reconnects, against a fake server: the resubscribe carries `since` (the last
message delivered, or the `subscribed` reply's position), duplicates are dropped by offset, a
gap raises MessagesMissed once (or calls `on_missed`), channels without history behave as
before; `publish` returns the offset, `history` asks and returns the messages."""

import asyncio
from collections.abc import Iterator

import pytest

from switchboard_client import MessagesMissed, MissReason, RequestError
from switchboard_client.cli import command_run
from tests.unit.switchboard_client.fake_server import (
    FakeServer,
    Frame,
    Reply,
    client_for,
    message,
    replies,
    until,
)

ROOM = "chat.lobby"
TIMEOUT = 10


def scripted(*answers: list[Frame]) -> Reply:
    """Each subscribe answered by the next of `answers`: its first frame (with the
    subscribe's id), then the others as they are (a replay); other requests by `replies`."""
    left: Iterator[list[Frame]] = iter(answers)

    def reply(frame: Frame) -> list[Frame]:
        if frame["type"] != "subscribe":
            return replies(frame)
        first, *rest = next(left, None) or [{"type": "error", "code": "unscripted"}]
        return [{**first, "id": frame["id"]}, *rest]

    return reply


def subscribed(offset: int, epoch: str = "e1", **more: object) -> Frame:
    return {"type": "subscribed", "channel": ROOM, **more, "offset": offset, "epoch": epoch}


async def reconnected(server: FakeServer, client, *, code: int = 1012) -> None:
    """Drop the connection and wait until the client has its room back."""
    connections = client.connections
    await server.drop(code)
    await until(lambda: client.connected and client.connections > connections)
    await until(lambda: len(server.received[-1]) >= 1)


async def next_data(room) -> object:
    async with asyncio.timeout(TIMEOUT):
        return (await anext(room))["data"]


async def test_the_resubscribe_carries_since_of_the_last_message_and_the_replay_comes_once():
    replay = [message(ROOM, "g", 7), message(ROOM, "h", 8)]
    reply = scripted(
        [subscribed(4)], [subscribed(8, recovered=True), *replay], [subscribed(9, recovered=True)]
    )
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        room = await client.subscribe(ROOM)
        assert server.received[0] == [{"type": "subscribe", "channel": ROOM, "id": 1}]
        await server.send(message(ROOM, "e", 5), message(ROOM, "f", 6))
        assert [await next_data(room), await next_data(room)] == ["e", "f"]

        await reconnected(server, client)
        assert server.received[1] == [
            {"type": "subscribe", "channel": ROOM, "since": {"offset": 6, "epoch": "e1"}, "id": 2}
        ]
        # The replay, then copies of what was delivered already, then a new one.
        assert [await next_data(room), await next_data(room)] == ["g", "h"]
        await server.send(message(ROOM, "f", 6), message(ROOM, "h", 8), message(ROOM, "i", 9))
        assert await next_data(room) == "i"
        assert room.dropped == 0

        await reconnected(server, client)
        assert server.received[2][0]["since"] == {"offset": 9, "epoch": "e1"}


async def test_a_room_with_no_message_yet_resubscribes_from_the_subscribed_reply():
    reply = scripted([subscribed(3)], [subscribed(3, recovered=True)])
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        await client.subscribe(ROOM)
        await reconnected(server, client)
        assert server.received[1] == [
            {"type": "subscribe", "channel": ROOM, "since": {"offset": 3, "epoch": "e1"}, "id": 2}
        ]


async def test_not_recovered_raises_messages_missed_once_then_iteration_goes_on():
    reply = scripted([subscribed(1)], [subscribed(20, recovered=False)], [subscribed(21)])
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        room = await client.subscribe(ROOM)
        await server.send(message(ROOM, "a", 2))
        assert await next_data(room) == "a"
        await reconnected(server, client)
        await server.send(message(ROOM, "u", 21))

        with pytest.raises(MessagesMissed) as missed:
            await anext(room)
        error = missed.value
        assert (error.channel, error.reason, error.epoch, error.offset) == (
            ROOM,
            MissReason.NOT_RECOVERED,
            "e1",
            20,
        )
        assert str(error) == "some messages may be missing in chat.lobby"
        assert await next_data(room) == "u"  # once only: iterating again goes on
        await reconnected(server, client)
        assert server.received[2][0]["since"] == {"offset": 21, "epoch": "e1"}


async def test_a_live_message_in_a_new_epoch_raises_messages_missed_before_it():
    async with (
        asyncio.timeout(TIMEOUT),
        FakeServer(scripted([subscribed(0)])) as server,
        client_for(server) as client,
    ):
        room = await client.subscribe(ROOM)
        await server.send(message(ROOM, "old", 1, "e1"), message(ROOM, "new", 1, "e2"))
        await server.send(message(ROOM, "new", 1, "e2"), message(ROOM, "next", 2, "e2"))
        assert await next_data(room) == "old"
        with pytest.raises(MessagesMissed) as missed:
            await anext(room)
        assert (missed.value.reason, missed.value.epoch, missed.value.offset) == (
            MissReason.EPOCH_CHANGED,
            "e2",
            1,
        )
        assert [await next_data(room), await next_data(room)] == ["new", "next"]


async def test_on_missed_is_called_instead_of_raising_for_every_gap():
    reply = scripted([subscribed(5)], [subscribed(9, recovered=False)])
    calls: list[MessagesMissed] = []
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        room = await client.subscribe(ROOM, on_missed=calls.append)
        await reconnected(server, client)
        await server.send(message(ROOM, "x", 10), message(ROOM, "y", 1, "e2"))
        assert [await next_data(room), await next_data(room)] == ["x", "y"]
    assert [(c.channel, c.reason, c.epoch, c.offset) for c in calls] == [
        (ROOM, MissReason.NOT_RECOVERED, "e1", 9),
        (ROOM, MissReason.EPOCH_CHANGED, "e2", 1),
    ]


async def test_a_channel_without_history_delivers_everything_and_resubscribes_without_since():
    async with asyncio.timeout(TIMEOUT), FakeServer() as server, client_for(server) as client:
        room = await client.subscribe("lobby")
        await server.send(message("lobby", "same"), message("lobby", "same"))
        assert [await next_data(room), await next_data(room)] == ["same", "same"]
        await reconnected(server, client)
        assert server.received[1] == [{"type": "subscribe", "channel": "lobby", "id": 2}]


async def test_a_room_left_and_joined_again_starts_afresh():
    reply = scripted([subscribed(4)], [subscribed(6)])
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        room = await client.subscribe(ROOM)
        await room.aclose()
        again = await client.subscribe(ROOM)
        await server.send(message(ROOM, "old", 5), message(ROOM, "new", 7))
        assert await next_data(again) == "new"  # 5 is before the new reply's 6
        assert [f.get("since") for f in server.received[0]] == [None, None, None]


async def test_publish_returns_the_offset_and_none_without_history():
    def reply(frame: Frame) -> list[Frame]:
        if frame["channel"] == ROOM:
            top = {"offset": 12, "epoch": "e1", "id": frame["id"]}
            return [{"type": "published", "channel": ROOM, **top}]
        return replies(frame)

    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        assert await client.publish(ROOM, {"n": 1}) == 12
        assert await client.publish("lobby", {"n": 2}) is None


async def test_history_asks_with_the_limit_and_returns_the_message_frames():
    kept = [message(ROOM, "a", 1), message(ROOM, "b", 2)]

    def reply(frame: Frame) -> list[Frame]:
        if frame["channel"] != ROOM:
            error = {"code": "history_unavailable", "message": "This channel keeps no history"}
            return [{"type": "error", **error, "id": frame["id"]}]
        top = {"offset": 2, "epoch": "e1", "id": frame["id"]}
        return [{"type": "history", "channel": ROOM, "messages": kept, **top}]

    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        assert await client.history(ROOM) == kept
        assert await client.history(ROOM, limit=2) == kept
        with pytest.raises(RequestError) as refused:
            await client.history("lobby")
        assert refused.value.code == "history_unavailable"
        assert server.received[0] == [
            {"type": "history", "channel": ROOM, "id": 1},
            {"type": "history", "channel": ROOM, "limit": 2, "id": 2},
            {"type": "history", "channel": "lobby", "id": 3},
        ]


async def test_the_cli_says_some_messages_may_be_missing_once_per_gap(capsys):
    reply = scripted([subscribed(1)], [subscribed(1)], [subscribed(8, recovered=False)])
    async with asyncio.timeout(TIMEOUT), FakeServer(reply) as server, client_for(server) as client:
        rooms: dict = {}
        assert await command_run(client, f"/sub {ROOM}", rooms, raw=False)
        assert await command_run(client, f"/sub {ROOM}", rooms, raw=False)  # again: one room
        await reconnected(server, client)
        await client.ping()
    assert capsys.readouterr().out == "some messages may be missing in chat.lobby\n"
    assert [f["type"] for f in server.received[0]] == ["subscribe", "subscribe"]
