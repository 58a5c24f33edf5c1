"""Every supported server's own logs (access and error) leave no token, ticket or password in
any output, and still say what was requested: a token travelling every documented way."""

import contextlib
import json
import socket

import pytest
from websockets.exceptions import InvalidStatus

from deploy.servers import SERVER_NAMES, SUPPORTED
from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.test_tickets_system import ticket_issue
from tests.system.wsclient import frame_json, frame_recv, secret_parts, ws_connect

# Per server: the access lines that must be there (redacted), so that the test cannot pass
# with a log simply off. daphne's access log runs through daphne_adapter; uvicorn's and
# granian's loggers through LOGGING's redacting handlers.
ACCESS_LINES = {
    "daphne": [
        '"GET /api/auth/me/?token=[redacted]&access=[redacted]" 401',
        '"GET /api/nothing/?token=[redacted]" 404',
        '"GET /api/tokens/[redacted]/" 404',
        "WSCONNECT /ws/echo/",
        "WSCONNECT /ws/session/",
        "WSREJECT /ws/echo/",
    ],
    "uvicorn": [
        '"GET /api/auth/me/?token=[redacted]&access=[redacted] HTTP/1.1" 401',
        '"GET /api/nothing/?token=[redacted] HTTP/1.1" 404',
        '"GET /api/tokens/[redacted]/ HTTP/1.1" 404',
        '"WebSocket /ws/echo/?token=[redacted]" [accepted]',
        '"WebSocket /ws/session/?token=[redacted]" [accepted]',
        '"WebSocket /ws/session/?ticket=[redacted]" [accepted]',
        '"WebSocket /ws/echo/?token=[redacted]" 403',
    ],
    "granian": [
        '"GET /api/auth/me/ HTTP/1.1" 401',
        '"GET /api/nothing/ HTTP/1.1" 404',
        '"GET /api/tokens/[redacted]/ HTTP/1.1" 404',
        '"- /ws/echo/ HTTP/1.1" 101',  # granian: no method for a WebSocket, 101 even when refused
        '"- /ws/session/ HTTP/1.1" 101',
    ],
}


async def welcome_of(worker, path: str, **kwargs) -> dict:
    """Open `path` on `worker` and return its first frame (the welcome)."""
    async with ws_connect(worker, path, **kwargs) as ws:
        return await frame_json(ws)


@pytest.mark.parametrize("server", SERVER_NAMES)
async def test_no_server_writes_a_token_but_each_writes_its_access_lines(start_worker, server):
    worker = start_worker(server=server, name=f"logs-{server}")
    user = user_register(worker)
    access = user["access"]
    bearer = {"Authorization": f"Bearer {access}"}

    async with ws_connect(worker, f"/ws/echo/?token={access}") as ws:
        await ws.send("hi")
        assert await frame_recv(ws) == "Server received: hi"
    session_ways = [
        (f"/ws/session/?token={access}", {}),
        ("/ws/session/", {"subprotocols": ["switchboard.v1", f"bearer.{access}"]}),
        ("/ws/session/", {"additional_headers": bearer}),
    ]
    ticket = ticket_issue(worker, access)
    session_ways.append((f"/ws/session/?ticket={ticket}", {}))
    for path, kwargs in session_ways:
        welcome = await welcome_of(worker, path, **kwargs)
        assert (welcome["type"], welcome["user"]["id"]) == ("welcome", user["id"]), path
    with pytest.raises(InvalidStatus) as refused:
        await welcome_of(worker, f"/ws/echo/?token={access}", origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with http_client(worker) as client:
        assert client.get(f"/api/auth/me/?token={access}&access={access}").status_code == 401
        me = client.get("/api/auth/me/", headers=bearer)
        assert (me.status_code, me.json()["id"]) == (200, user["id"])
        assert client.get(f"/api/nothing/?token={access}").status_code == 404
        assert client.get(f"/api/tokens/{access}/").status_code == 404
        login = client.post(
            "/api/auth/token/", content=json.dumps({"username": user["username"]}) + PASSWORD
        )
        assert login.status_code == 400
    worker.stop()

    output = worker.output()
    secrets = [*secret_parts(access), *secret_parts(user["refresh"]), ticket, PASSWORD]
    assert [secret for secret in secrets if secret in output] == []
    assert [line for line in ACCESS_LINES[server] if line not in output] == []


MALFORMED = 30  # requests no HTTP parser accepts, well over the per-minute allowance
LOG_4XX_PER_MINUTE = 10  # the default allowance of client-error records a minute


def malformed_request_answer(port: int) -> bytes:
    """Send one request that is not HTTP; the first line of the answer (or b"" if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("server", SUPPORTED)
def test_malformed_requests_get_400_and_at_most_the_allowance_of_log_lines(start_worker, server):
    worker = start_worker(server=server, redis=False, name=f"noise-{server}")
    streams = {"log file": worker.log_text, "stderr": worker.stderr_path.read_text}
    before = {name: len(read().splitlines()) for name, read in streams.items()}

    answers = {malformed_request_answer(worker.port) for _ in range(MALFORMED)}

    assert answers <= {b"HTTP/1.1 400 Bad Request", b""}, answers
    with http_client(worker) as client:
        assert client.get("/healthz").status_code == 200
    for name, read in streams.items():  # each record goes to both
        new_lines = read().splitlines()[before[name] :]
        about_them = [line for line in new_lines if "/healthz" not in line]
        assert len(about_them) <= LOG_4XX_PER_MINUTE, (name, about_them)
