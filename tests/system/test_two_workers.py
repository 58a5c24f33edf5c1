"""Two daphne workers sharing one Redis: revocation sent through one reaches the other."""

import asyncio
import json

import httpx
import websockets

from tests.system.conftest import user_register


async def test_logout_all_through_worker_2_closes_a_session_on_worker_1(start_worker):
    worker1, worker2 = start_worker(), start_worker()
    user = user_register(worker1)
    async with websockets.connect(f"{worker1.ws}/ws/session/?token={user['access']}") as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        async with httpx.AsyncClient(base_url=worker2.http) as client:
            response = await client.post(
                "/api/auth/logout-all/", headers={"Authorization": f"Bearer {user['access']}"}
            )
        assert response.status_code == 204
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error == {"type": "error", "code": "session_revoked", "message": "Session revoked"}
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4501
    assert ws.close_reason == "session revoked"
