"""Credentials out of URLs against real daphne workers: tickets (one use, across workers),
the bearer subprotocol, the Authorization header and the first-frame `auth` message."""

import asyncio
import json

from tests.system.conftest import http_client, user_register
from tests.system.wsclient import frame_json, until_closed, ws_connect

UNAUTHORIZED = {"type": "error", "code": "unauthorized", "message": "Unauthorized"}


def ticket_issue(worker, access: str) -> str:
    with http_client(worker) as client:
        response = client.post(
            "/api/realtime/ticket/", headers={"Authorization": f"Bearer {access}"}
        )
    assert response.status_code == 201, response.text
    assert response.json()["expires_in"] == 30
    return response.json()["ticket"]


async def redeem(worker, ticket: str) -> tuple[str, int | None]:
    """Open `/ws/session/?ticket=…`: ("welcome", None) or (error code, close code)."""
    async with ws_connect(worker, f"/ws/session/?ticket={ticket}") as ws:
        frame = await frame_json(ws)
        if frame["type"] == "welcome":
            return "welcome", None
        closed = await until_closed(ws)
        return frame["code"], closed.code


async def test_two_workers_racing_on_one_ticket_let_exactly_one_in(start_worker):
    worker1, worker2 = start_worker(), start_worker()
    alice = user_register(worker1)

    for _ in range(5):
        ticket = ticket_issue(worker1, alice["access"])
        results = await asyncio.gather(redeem(worker1, ticket), redeem(worker2, ticket))
        assert sorted(results, key=str) == sorted(
            [("welcome", None), ("unauthorized", 4500)], key=str
        )
    for worker in (worker1, worker2):
        assert alice["access"] not in worker.output()
        assert ticket not in worker.output()  # daphne's access log blanks ticket= too


async def test_the_bearer_subprotocol_is_answered_with_switchboard_v1(start_worker):
    worker = start_worker()
    alice = user_register(worker)

    async with ws_connect(
        worker, "/ws/session/", subprotocols=["switchboard.v1", f"bearer.{alice['access']}"]
    ) as ws:
        welcome = await frame_json(ws)
        assert ws.subprotocol == "switchboard.v1"
    assert welcome["user"] == {"id": alice["id"], "username": alice["username"]}
    assert alice["access"] not in worker.output()


async def test_an_authorization_header_authenticates_a_non_browser_client(start_worker):
    worker = start_worker()
    alice = user_register(worker)

    async with ws_connect(
        worker, "/ws/session/", additional_headers={"Authorization": f"Bearer {alice['access']}"}
    ) as ws:
        assert (await frame_json(ws))["user"]["id"] == alice["id"]


async def test_the_first_frame_may_authenticate_and_silence_times_out(start_worker):
    worker = start_worker(WS_AUTH_TIMEOUT="1")
    alice = user_register(worker)

    async with ws_connect(worker, "/ws/session/") as ws:
        await ws.send(json.dumps({"type": "auth", "token": alice["access"], "id": 1}))
        welcome = await frame_json(ws)
    async with ws_connect(worker, "/ws/session/") as silent:
        closed = await until_closed(silent, within=5)

    assert (welcome["type"], welcome["id"]) == ("welcome", 1)
    assert closed.json() == [UNAUTHORIZED]
    assert (closed.code, closed.reason) == (4500, "auth timeout")
    assert "no auth frame in time, closing 4500" in worker.log_text()
