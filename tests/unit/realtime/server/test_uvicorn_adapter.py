"""realtime.server.uvicorn_adapter's version guard: it adapts only the uvicorn and websockets
it was checked against, and on any other runs uvicorn's own protocol and says so (what the
adaptation does is shown against a real uvicorn in tests/system/test_servers.py,
test_control_frames.py and test_proxy_system.py)."""

import logging

import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from deploy.servers import SERVERS, UVICORN_WS
from realtime.server import uvicorn_adapter


def test_the_installed_uvicorn_and_websockets_are_the_versions_the_adapter_covers():
    # Fails when a pin moves past what the adapter was checked against: read the new
    # websockets_sansio_impl.py and websockets' protocol.py, then widen COVERED_VERSIONS.
    assert uvicorn_adapter.versions_uncovered() == []
    assert issubclass(uvicorn_adapter.WebSocketProtocol, WebSocketsSansIOProtocol)
    assert uvicorn_adapter.WebSocketProtocol is not WebSocketsSansIOProtocol


@pytest.mark.parametrize(("name", "installed"), [("uvicorn", "0.55.0"), ("websockets", "18.0")])
def test_an_unknown_version_runs_uvicorns_own_protocol_and_says_which(
    monkeypatch, caplog, name, installed
):
    real = uvicorn_adapter.version
    monkeypatch.setattr(
        uvicorn_adapter, "version", lambda dist: installed if dist == name else real(dist)
    )
    with caplog.at_level(logging.WARNING, logger="switchboard.realtime"):
        protocol = uvicorn_adapter._protocol_class()

    assert protocol is WebSocketsSansIOProtocol
    [record] = [r for r in caplog.records if r.name == "switchboard.realtime"]
    assert record.getMessage().startswith(
        f"{name} {installed} not covered by realtime.server.uvicorn_adapter (covers uvicorn "
        "0.54.x, websockets 17.x): running uvicorn's own WebSocket protocol"
    )


def test_uvicorns_command_line_runs_the_adapter():
    argv = SERVERS["uvicorn"].argv(host="127.0.0.1", port=8001, max_message_bytes=65536)
    assert argv[argv.index("--ws") + 1] == UVICORN_WS
    module, _, name = UVICORN_WS.partition(":")
    assert (module, name) == (uvicorn_adapter.__name__, "WebSocketProtocol")
