"""The REST half of the client: log in and refresh tokens over httpx, and build the WebSocket
URL from the site's base URL."""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from switchboard_client.errors import (
    ConnectionLost,
    LoginRefused,
    RestError,
    ServerUnreachable,
    Unauthorized,
    unreachable_why,
)


@dataclass
class Tokens:
    """An access and refresh token pair. Left out of `repr`, so a logged object leaks none."""

    access: str = field(repr=False)
    refresh: str = field(repr=False)


def ws_url(*, base_url: str, path: str) -> str:
    """`http(s)://host[:port][/prefix]` + `path` as a `ws(s)://` URL (never a query string:
    credentials go in a header)."""
    parts = urlsplit(base_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
    prefix = parts.path.rstrip("/")
    return urlunsplit((schemes[parts.scheme], parts.netloc, prefix + path, "", ""))


def _failure(response: httpx.Response) -> Exception:
    """The exception for a REST error response: Unauthorized for 401, else RestError."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code", "error"))
    detail = str(body.get("detail", response.reason_phrase))
    if response.status_code == 401:
        return Unauthorized(4500, code)
    return RestError(response.status_code, code, detail)


def origin(url: str | httpx.URL) -> str:
    """`scheme://host[:port]` of `url`: the server, without path or query."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}"


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await http.post(path, json=body)
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # nobody answered at all
        failed = f"POST {path} failed: {type(e).__name__}"
        raise ServerUnreachable(origin(http.base_url), unreachable_why(e), failed) from e
    except httpx.HTTPError as e:  # a timeout, a dropped connection: as a dropped socket
        raise ConnectionLost(None, f"POST {path} failed: {type(e).__name__}") from e
    if response.status_code != 200:
        raise _failure(response)
    reply: dict[str, Any] = response.json()  # a 200 from these endpoints is a JSON object
    return reply


async def tokens_login(*, http: httpx.AsyncClient, username: str, password: str) -> Tokens:
    """`POST /api/auth/token/`: a new pair; LoginRefused (an Unauthorized, reason
    `bad_credentials`) on 401, RestError on others (429 `login_throttled`), ServerUnreachable
    when nothing answers."""
    try:
        body = await _post(http, "api/auth/token/", {"username": username, "password": password})
    except Unauthorized as e:
        raise LoginRefused(e.reason) from None
    return Tokens(access=body["access"], refresh=body["refresh"])


async def tokens_refresh(*, http: httpx.AsyncClient, refresh: str) -> Tokens:
    """`POST /api/auth/token/refresh/`: a new pair (the used refresh token is now dead, so the
    caller must keep the new one); Unauthorized when the refresh token is refused."""
    body = await _post(http, "api/auth/token/refresh/", {"refresh": refresh})
    return Tokens(access=body["access"], refresh=body["refresh"])
