"""A real worker whose redis-server stops: every check that needs Redis refuses or counts by a
local rule (docs/SECURITY.md, "When Redis cannot answer"), says so once, and is back to normal
when Redis is."""

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.system.conftest import user_register
from tests.system.stack import Worker
from tests.system.wsclient import frame_json, until_closed, ws_connect

UNAVAILABLE = {
    "type": "error",
    "code": "unavailable",
    "message": "Temporarily unavailable; try again later",
}


async def echo_outcome(worker: Worker) -> int | str:
    """`"echoed"`, or the close code the echo endpoint answered with."""
    async with ws_connect(worker, "/ws/echo/") as ws:
        try:
            await ws.send("hi")
            assert await ws.recv() == "Server received: hi"
        except ConnectionClosed:
            return ws.close_code
        return "echoed"


async def session_outcome(worker: Worker, access: str) -> tuple[dict, int | None]:
    """The first frame of `/ws/session/` with `access`, and the close code if it closed."""
    headers = {"Authorization": f"Bearer {access}"}
    async with ws_connect(worker, "/ws/session/", additional_headers=headers) as ws:
        first = await frame_json(ws)
        if first["type"] == "welcome":
            return first, None
        return first, (await until_closed(ws)).code


@pytest.fixture
def worker(start_worker, private_redis) -> Worker:
    return start_worker(
        redis=False,
        REDIS_URL=private_redis.url,
        WS_CONNECTS_PER_MINUTE="4",
        LOGIN_FAILURES_PER_USERNAME="2/15minutes",
    )


async def test_with_redis_stopped_access_tokens_are_refused_and_limits_count_per_worker(
    worker, private_redis
):
    user = user_register(worker)
    private_redis.stop()

    first, code = await session_outcome(worker, user["access"])
    assert (first, code) == (UNAVAILABLE, 1013)
    async with httpx.AsyncClient(base_url=worker.http, trust_env=False) as client:
        me = await client.get(
            "/api/auth/me/", headers={"Authorization": f"Bearer {user['access']}"}
        )
    assert (me.status_code, me.json()["code"]) == (503, "unavailable")
    # The session above was the first connection of this minute; three more fit, the fifth
    # is refused by this worker's own count.
    assert [await echo_outcome(worker) for _ in range(4)] == ["echoed"] * 3 + [4008]
    # Logins still work, and their failures are counted by this worker: never unthrottled.
    async with httpx.AsyncClient(base_url=worker.http, trust_env=False, timeout=30) as client:
        wrong = {"username": user["username"], "password": "not the password"}
        statuses = [(await client.post("/api/auth/token/", json=wrong)).status_code for _ in "abc"]
    assert statuses == [401, 401, 429]

    log = worker.log_text()
    assert log.count("revoked_tokens: Redis cannot answer (ConnectionError); access tokens ") == 1
    assert log.count("connect_rate: Redis cannot answer (ConnectionError); counted in this ") == 1
    assert log.count("login_rate: Redis cannot answer (ConnectionError); counted in this ") == 1

    private_redis.start()
    # Access tokens are accepted again; what this worker counted during the outage still
    # counts for the rest of the minute (Redis coming back grants no fresh allowance).
    async with httpx.AsyncClient(base_url=worker.http, trust_env=False) as client:
        me = await client.get(
            "/api/auth/me/", headers={"Authorization": f"Bearer {user['access']}"}
        )
    assert me.status_code == 200
    first, code = await session_outcome(worker, user["access"])
    assert (first["code"], code) == ("rate_limited", 4008)
    log = worker.log_text()
    assert "revoked_tokens: Redis answers again; checked across workers" in log
    assert "connect_rate: Redis answers again; checked across workers" in log
