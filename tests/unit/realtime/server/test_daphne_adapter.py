"""realtime.server.daphne_adapter's version guard: it patches only the daphne, autobahn and
Twisted it was checked against (what the patches do is shown against a real daphne in
tests/system/test_daphne_compat.py and test_control_frames.py)."""

import logging

import autobahn
import daphne
import pytest
import twisted
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

from realtime.server import daphne_adapter as daphne_compat

LIMITS = {
    "max_message_bytes": 65536,
    "max_send_backlog": 1024 * 1024,
    "control_frames_per_second": 20.0,
    "control_frame_burst": 40,
    "rate_abuse_window": 10,
}


def test_the_installed_daphne_autobahn_and_twisted_are_the_versions_the_patches_cover():
    # Fails when a pin moves past what the patches were checked against: read the new
    # ws_protocol.py / websocket/protocol.py / abstract.py, then widen COVERED_VERSIONS.
    assert daphne_compat.versions_uncovered() == []


@pytest.mark.parametrize(
    ("module", "version"),
    [(daphne, "4.3.0"), (autobahn, "27.1.1"), (twisted, "27.2.0")],
    ids=["daphne", "autobahn", "twisted"],
)
def test_an_unknown_version_patches_nothing_and_says_which(monkeypatch, caplog, module, version):
    monkeypatch.setattr(module, "__version__", version)
    # config.asgi may have installed the patches in this process already: start unpatched.
    monkeypatch.setattr(WebSocketProtocol, "_switchboard_compat", False, raising=False)
    handlers = (WebSocketProtocol.onConnect, WebSocketProtocol.onPing, WebSocketFactory.__init__)
    with caplog.at_level(logging.WARNING, logger="switchboard.realtime"):
        installed = daphne_compat.install(**LIMITS)

    assert installed is False
    assert (WebSocketProtocol.onConnect, WebSocketProtocol.onPing, WebSocketFactory.__init__) == (
        handlers
    )
    [record] = [r for r in caplog.records if r.name == "switchboard.realtime"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"{module.__name__} {version} not covered by realtime.server.daphne_adapter (covers daphne "
        "4.1.x/4.2.x, autobahn 26.x, twisted 26.x)"
    )


def test_autobahns_per_connection_configuration_dump_is_formatted_only_when_written():
    import autobahn.websocket.protocol as autobahn_protocol

    import config.asgi  # noqa: F401  (installs the adapter)

    class Option:
        formatted = 0

        def __repr__(self) -> str:
            Option.formatted += 1
            return "Option()"

    dump = autobahn_protocol.pformat([("openHandshakeTimeout", Option(), "WebSocketFactory")])
    before_writing = Option.formatted
    written = f"\n{dump}"

    assert autobahn_protocol.pformat is daphne_compat.LazyPformat
    assert before_writing == 0
    assert written == "\n[('openHandshakeTimeout', Option(), 'WebSocketFactory')]"
