"""realtime.edge.origin: which browser origins may open a WebSocket."""

import logging

import pytest
from channels.routing import URLRouter

from realtime.edge.origin import OriginCheckMiddleware, origin_allowed, origin_parse
from realtime.routing import websocket_urlpatterns
from tests.unit.realtime.sessions import from_ip
from tests.unit.realtime.ws import receive_close

ALLOWED = ["https://app.example.com", "http://localhost:3000"]


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://localhost:8000", "localhost:8000"),
        ("HTTP://LOCALHOST:8000", "localhost:8000"),
        ("http://localhost", "localhost"),
        ("http://localhost:80", "localhost"),
        ("https://localhost", "localhost"),
        ("https://localhost:443", "localhost"),
        ("http://[::1]:8000", "[::1]:8000"),
        ("http://localhost:8000/", "localhost:8000"),
    ],
)
def test_the_same_origin_is_allowed(origin, host):
    assert origin_allowed(origin, host, []) is True


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1:8000"),
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("http://localhost:8000", "localhost"),
        ("https://localhost", "localhost:80"),
        ("http://evil.example.com:8000", "localhost:8000"),
        ("http://localhost.evil.example.com:8000", "localhost:8000"),
    ],
)
def test_another_host_or_port_is_refused(origin, host):
    assert origin_allowed(origin, host, []) is False


def test_the_same_origin_on_a_host_not_in_allowed_hosts_is_refused():
    # DNS rebinding: the attacker's page and the Host header both say evil.example.com.
    assert origin_allowed("http://evil.example.com", "evil.example.com", []) is False


def test_no_host_header_means_no_same_origin():
    assert origin_allowed("http://localhost:8000", "", []) is False


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://app.example.com:443",
        "https://APP.example.com",
        "http://localhost:3000",
    ],
)
def test_an_exact_entry_of_allowed_origins_is_allowed(origin):
    assert origin_allowed(origin, "localhost:8000", ALLOWED) is True


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://evil.app.example.com",
        "https://app.example.com.evil.example",
        "http://localhost:3001",
        "http://localhost",
    ],
)
def test_an_origin_differing_from_the_allowed_entries_in_scheme_host_or_port_is_refused(origin):
    assert origin_allowed(origin, "switchboard.example.com", ALLOWED) is False


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        "file://",
        "ftp://localhost:8000",
        "http://localhost:8000/path",
        "http://localhost:99999",
        "http://localhost:port",
        "http://",
        "localhost:8000",
    ],
)
def test_an_origin_that_is_not_a_usable_origin_is_refused(origin):
    assert origin_parse(origin) is None
    assert origin_allowed(origin, "localhost:8000", ["null", origin]) is False


def test_origin_parse_normalizes_scheme_host_and_default_port():
    assert origin_parse("HTTPS://App.Example.com") == ("https", "app.example.com", 443)
    assert origin_parse("ws://localhost") == ("ws", "localhost", 80)
    assert origin_parse("http://localhost:8000") == ("http", "localhost", 8000)


# -- the handshake ------------------------------------------------------------------------


def headers(origin: str | None, host: str = "127.0.0.1:8000") -> list[tuple[bytes, bytes]]:
    sent = [(b"host", host.encode())]
    if origin is not None:
        sent.append((b"origin", origin.encode()))
    return sent


async def test_a_foreign_origin_is_refused_at_the_handshake_and_logged(connect, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    socket = await connect("/ws/echo/", headers=headers("https://evil.example.com"))

    assert socket.accepted is False
    assert [r.getMessage() for r in caplog.records if r.name == "switchboard.security"] == [
        "websocket origin refused: origin='https://evil.example.com' path=/ws/echo/ client=unknown"
    ]


async def test_a_foreign_origin_is_refused_on_the_session_endpoint_too(connect):
    socket = await connect("/ws/session/", headers=headers("https://evil.example.com"))

    assert socket.accepted is False


async def test_a_same_origin_handshake_is_accepted(connect):
    socket = await connect("/ws/echo/", headers=headers("http://127.0.0.1:8000"))

    await socket.send_to(text_data="hi")

    assert socket.accepted is True
    assert await socket.receive_from() == "Server received: hi"


async def test_the_same_host_on_another_port_is_refused(connect):
    socket = await connect("/ws/echo/", headers=headers("http://127.0.0.1:9000"))

    assert socket.accepted is False


async def test_the_null_origin_is_refused(connect, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    socket = await connect("/ws/echo/", headers=headers("null"))

    assert socket.accepted is False
    assert "origin='null'" in caplog.records[-1].getMessage()


async def test_a_client_without_an_origin_header_is_allowed(connect):
    socket = await connect("/ws/echo/", headers=headers(None))

    assert socket.accepted is True


async def test_an_origin_listed_in_ws_allowed_origins_is_allowed_with_its_exact_port(
    connect, settings
):
    settings.WS_ALLOWED_ORIGINS = ["https://app.example.com:8443"]
    application = OriginCheckMiddleware(URLRouter(websocket_urlpatterns))  # reads the setting

    allowed = await connect(
        "/ws/echo/", headers=headers("https://app.example.com:8443"), application=application
    )
    other_port = await connect(
        "/ws/echo/", headers=headers("https://app.example.com"), application=application
    )

    assert allowed.accepted is True
    assert other_port.accepted is False


async def test_refused_origins_count_toward_the_connection_rate_and_are_still_refused_403(
    connect, settings
):
    settings.WS_CONNECTS_PER_MINUTE = 3
    denied = (False, 1000)  # closed before any accept: daphne answers the handshake 403
    foreign, same = headers("https://evil.example.com"), headers("http://127.0.0.1:8000")
    for _ in range(3):
        refused = await connect("/ws/echo/", headers=foreign, application=from_ip("203.0.113.9"))
        assert (refused.accepted, refused.detail) == denied

    limited = await connect("/ws/echo/", headers=same, application=from_ip("203.0.113.9"))
    over = await connect("/ws/echo/", headers=foreign, application=from_ip("203.0.113.9"))
    elsewhere = await connect("/ws/echo/", headers=same, application=from_ip("203.0.113.10"))

    assert limited.accepted
    assert await receive_close(limited) == (4008, "rate limited")
    assert (over.accepted, over.detail) == denied  # a foreign origin is told 403, nothing else
    assert elsewhere.accepted
