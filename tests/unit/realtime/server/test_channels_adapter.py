"""realtime.server.channels_adapter's version guard: its copy of channels' consumer loop was
checked against the channels installed, and says so when it was not; and a close that never
waits for Django's sync thread."""

from importlib.metadata import version

import pytest
from channels.generic import websocket as channels_websocket
from channels.testing import WebsocketCommunicator

from config.asgi import application
from realtime.server import channels_adapter


def test_the_installed_channels_is_the_one_the_copied_consumer_loop_was_checked_against():
    assert channels_adapter.versions_uncovered() == [], (
        "channels changed: compare channels.consumer.AsyncConsumer.__call__ and dispatch, and "
        "channels.generic.websocket.AsyncWebsocketConsumer.websocket_disconnect, with "
        "realtime/server/channels_adapter.py, then add the version to COVERED_VERSIONS"
    )


def test_an_unknown_channels_is_named(monkeypatch):
    monkeypatch.setattr(channels_adapter, "version", lambda name: "5.0.0")
    assert channels_adapter.versions_uncovered() == ["channels 5.0.0"]


def test_the_guard_reads_the_real_distribution_version():
    assert version("channels").startswith(channels_adapter.COVERED_VERSIONS)


@pytest.mark.django_db(transaction=True)
async def test_closing_an_echo_socket_makes_no_hop_to_the_sync_thread(monkeypatch):
    hops: list[str] = []

    async def close_old_connections_hop() -> None:
        hops.append("aclose_old_connections")

    monkeypatch.setattr(channels_websocket, "aclose_old_connections", close_old_connections_hop)
    socket = WebsocketCommunicator(application, "/ws/echo/")
    connected, _ = await socket.connect()
    await socket.send_to(text_data="hi")
    echoed = await socket.receive_from()
    await socket.disconnect()
    await socket.wait()

    assert connected and echoed.endswith("hi")
    assert hops == []
