"""The REST half: URLs, token pairs that do not print, and REST failures as typed errors."""

import httpx
import pytest

from switchboard_client.errors import ConnectionLost, RestError, Unauthorized
from switchboard_client.rest import Tokens, tokens_login, tokens_refresh, ws_url


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/session/"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws/session/"),
        ("https://example.com/switchboard/", "wss://example.com/switchboard/ws/session/"),
        ("http://h/?token=x#frag", "ws://h/ws/session/"),
    ],
)
def test_ws_url_maps_the_scheme_keeps_the_prefix_and_drops_any_query(base_url, expected):
    assert ws_url(base_url=base_url, path="/ws/session/") == expected


@pytest.mark.parametrize("base_url", ["ftp://h", "127.0.0.1:8000", "http://"])
def test_ws_url_refuses_what_is_not_an_http_url(base_url):
    with pytest.raises(ValueError, match="base_url must be http"):
        ws_url(base_url=base_url, path="/ws/echo/")


def test_a_token_pair_never_shows_its_tokens_in_repr():
    assert repr(Tokens(access="a.b.c", refresh="d.e.f")) == "Tokens()"


def _http(status: int, body: dict, seen: list) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content))
        return httpx.Response(status, json=body)

    return httpx.AsyncClient(base_url="http://site/prefix", transport=httpx.MockTransport(answer))


async def test_login_posts_the_credentials_and_returns_the_pair():
    seen: list = []
    async with _http(200, {"access": "A", "refresh": "R"}, seen) as http:
        tokens = await tokens_login(http=http, username="alice", password="pw")
    assert (tokens.access, tokens.refresh) == ("A", "R")
    assert seen == [("/prefix/api/auth/token/", b'{"username":"alice","password":"pw"}')]


async def test_refused_credentials_raise_unauthorized_with_the_rest_code_as_reason():
    body = {"detail": "No active account", "code": "bad_credentials"}
    async with _http(401, body, []) as http:
        with pytest.raises(Unauthorized) as refused:
            await tokens_login(http=http, username="alice", password="wrong")
    assert (refused.value.code, refused.value.reason) == (4500, "bad_credentials")


async def test_a_throttled_login_raises_rest_error_with_status_code_and_detail():
    body = {"detail": "Too many failed logins", "code": "login_throttled"}
    async with _http(429, body, []) as http:
        with pytest.raises(RestError) as throttled:
            await tokens_login(http=http, username="alice", password="pw")
    error = throttled.value
    assert (error.status, error.code, error.detail) == (429, "login_throttled", body["detail"])


async def test_refresh_posts_the_refresh_token_and_returns_the_rotated_pair():
    seen: list = []
    async with _http(200, {"access": "A2", "refresh": "R2"}, seen) as http:
        tokens = await tokens_refresh(http=http, refresh="R1")
    assert (tokens.access, tokens.refresh) == ("A2", "R2")
    assert seen == [("/prefix/api/auth/token/refresh/", b'{"refresh":"R1"}')]


async def test_an_unreachable_server_raises_connection_lost_without_a_code():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(refuse)
    async with httpx.AsyncClient(base_url="http://site", transport=transport) as http:
        with pytest.raises(ConnectionLost) as lost:
            await tokens_refresh(http=http, refresh="R1")
    assert (lost.value.code, lost.value.reason) == (
        None,
        "POST api/auth/token/refresh/ failed: ConnectError",
    )
