"""A leave a session makes while the channel layer is down: its presence goes at once
(presence is not on the layer), and the fan-out's group discard is replayed on recovery."""

from channels.layers import get_channel_layer

from realtime.rooms.policy import room_group
from tests.conftest import access_for


async def test_a_leave_while_the_layer_is_down_drops_presence_at_once_and_replays_the_discard(
    connect, user, worker_hub, monkeypatch
):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await socket.receive_json_from())["type"] == "welcome"
    await socket.send_json_to({"type": "subscribe", "channel": "lobby"})
    assert (await socket.receive_json_from())["type"] == "subscribed"
    health, fanout = worker_hub.health, worker_hub.room_fanout
    group = get_channel_layer().groups[room_group("lobby")]
    assert fanout.channel_name in group
    # No monitor for this test: it performs the recovery step itself, after looking.
    monkeypatch.setattr(health, "monitor_start", lambda: None)
    health.failed("receive", ConnectionError("test outage"))

    await socket.send_json_to({"type": "unsubscribe", "channel": "lobby"})
    assert await socket.receive_json_from() == {"type": "unsubscribed", "channel": "lobby"}
    # Presence is not on the layer: the member is gone at once.
    assert await worker_hub.presence.users("lobby") == []
    # The worker's channel leaves the room's group once the layer is back.
    assert fanout.channel_name in group
    assert len(health.pending_leaves) == 1

    health.down.clear()  # what the monitor does when the layer answers again
    await health._rejoin_all()
    assert fanout.channel_name not in group
    assert health.pending_leaves == []
