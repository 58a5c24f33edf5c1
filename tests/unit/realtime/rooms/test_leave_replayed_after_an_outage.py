"""A leave a session makes while the channel layer is down reaches presence on recovery."""

from tests.conftest import access_for


async def test_a_leave_while_the_layer_is_down_is_replayed_on_recovery(
    connect, user, worker_hub, monkeypatch
):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await socket.receive_json_from())["type"] == "welcome"
    await socket.send_json_to({"type": "subscribe", "channel": "lobby"})
    assert (await socket.receive_json_from())["type"] == "subscribed"
    health = worker_hub.health
    # No monitor for this test: it performs the recovery step itself, after looking.
    monkeypatch.setattr(health, "monitor_start", lambda: None)
    health.failed("receive", ConnectionError("test outage"))

    await socket.send_json_to({"type": "unsubscribe", "channel": "lobby"})
    assert await socket.receive_json_from() == {"type": "unsubscribed", "channel": "lobby"}
    # The leave could not reach the store yet: the member is still listed.
    assert await worker_hub.presence.users("lobby") == [(user.pk, user.username)]

    health.down.clear()  # what the monitor does when the layer answers again
    await health._rejoin_all()
    assert await worker_hub.presence.users("lobby") == []
    assert health.pending_leaves == []
