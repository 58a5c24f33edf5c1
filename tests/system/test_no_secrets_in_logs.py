"""A full session on real daphne leaves no token, password or secret key in any output."""

import json

import pytest

from tests.system.conftest import PASSWORD, http_client, token_refresh, user_register
from tests.system.stack import SECRET_KEY
from tests.system.wsclient import (
    frame_json,
    secret_parts,
    session_open,
    token_forge,
    until_closed,
    ws_connect,
)

WRONG_PASSWORD = "wrong horse battery staple"
FORGED_KEY = "an-attacker-key-that-is-long-enough-0123456789"


@pytest.mark.parametrize("debug", ["0", "1"], ids=["debug-off", "debug-on"])
async def test_full_session_leaves_no_secret_in_any_output(start_worker, debug):
    worker = start_worker(DJANGO_DEBUG=debug)
    user = user_register(worker)
    with http_client(worker) as client:
        failed = client.post(
            "/api/auth/token/", json={"username": user["username"], "password": WRONG_PASSWORD}
        )
    assert failed.status_code == 401
    forged = token_forge(user_id=user["id"], key=FORGED_KEY)

    async with session_open(worker, user["access"]) as (ws, welcome):
        assert welcome["user"] == {"id": user["id"], "username": user["username"]}
        await ws.send(json.dumps({"type": "echo", "data": {"hello": "world"}}))
        assert await frame_json(ws) == {"type": "echo", "data": {"hello": "world"}}

        renewed = token_refresh(worker, user["refresh"])
        await ws.send(json.dumps({"type": "refresh", "token": renewed["access"], "id": 1}))
        refreshed = await frame_json(ws)
        assert (refreshed["type"], refreshed["id"]) == ("refreshed", 1)

        async with ws_connect(worker, f"/ws/session/?token={forged}") as bad:
            refused = await until_closed(bad)
        assert (refused.code, refused.reason) == (4500, "unauthorized")

        # Invalid JSON that carries a token: the error must not echo it into a log.
        await ws.send('{"type": "refresh", "token": "' + renewed["access"])
        assert await frame_json(ws) == {
            "type": "error",
            "code": "invalid_json",
            "message": "Frame is not valid JSON",
        }

        # Logout with the session's own access token revokes that token: the session closes.
        bearer = {"Authorization": f"Bearer {renewed['access']}"}
        with http_client(worker) as client:
            logout = client.post(
                "/api/auth/logout/", json={"refresh": renewed["refresh"]}, headers=bearer
            )
            assert logout.status_code == 204
        revoked = await until_closed(ws)
    assert (revoked.code, revoked.reason) == (4501, "session revoked")
    with http_client(worker) as client:
        original = {"Authorization": f"Bearer {user['access']}"}
        assert client.post("/api/auth/logout-all/", headers=original).status_code == 204

    log = worker.output_wait("tokens revoked: user_id=")
    assert "access token revoked (logout), closing 4501" in log
    secrets = [PASSWORD, WRONG_PASSWORD, SECRET_KEY]
    for token in (user["access"], user["refresh"], renewed["access"], renewed["refresh"], forged):
        secrets += secret_parts(token)
    assert [secret for secret in secrets if secret in log] == []

    events = worker.log_text()
    assert "websocket auth failed: reason=Token is invalid code=unauthorized" in events
    assert f"login failed: username='{user['username']}' client=127.0.0.1" in events
    assert "tokens revoked: user_id=" in events
    assert '"GET /ws/' not in log  # sanity: nothing else was requested
    assert "POST /api/auth/token/" in log  # the access log was written
