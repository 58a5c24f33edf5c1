"""The redis-py 8 trap: idle consumers on the Redis channel layer must stay open.

channels-redis 4.3 blocks 5 s per read; redis-py 8's default socket timeout is also 5 s, which
would close every idle consumer with 1011 after about 5 s. Sessions here idle for 35 s.
"""

import asyncio
import json
from contextlib import AsyncExitStack

from tests.system.conftest import user_register
from tests.system.wsclient import frame_json, frame_recv, session_open, ws_connect

IDLE_SECONDS = 35


async def test_idle_sessions_and_echo_on_redis_answer_after_35_seconds(start_worker):
    worker = start_worker(redis=True, JWT_ACCESS_TTL="600")
    user = user_register(worker)
    async with AsyncExitStack() as stack:
        # No client pings: nothing at all crosses the sockets while they idle.
        sessions = [
            (
                await stack.enter_async_context(
                    session_open(worker, user["access"], ping_interval=None)
                )
            )[0]
            for _ in range(3)
        ]
        echo = await stack.enter_async_context(ws_connect(worker, "/ws/echo/", ping_interval=None))

        await asyncio.sleep(IDLE_SECONDS)

        for number, ws in enumerate(sessions):
            await ws.send(json.dumps({"type": "ping", "id": number}))
            assert await frame_json(ws) == {"type": "pong", "id": number}
        await echo.send("hello")
        assert await frame_recv(echo) == "Server received: hello"
        assert [ws.close_code for ws in [*sessions, echo]] == [None] * 4
    output = worker.output()
    assert "Exception inside application" not in output
    assert "code=1011" not in output
