"""SIGTERM: every open WebSocket is closed with 1001 "server going away", not dropped."""

import signal

from tests.system.conftest import user_register
from tests.system.wsclient import session_open, until_closed, ws_connect


async def test_sigterm_closes_every_socket_with_1001(start_worker):
    worker = start_worker()
    user = user_register(worker)
    async with (
        session_open(worker, user["access"]) as (session, _),
        ws_connect(worker, "/ws/echo/") as echo,
    ):
        worker.stop(signal.SIGTERM)
        for ws in (session, echo):
            closed = await until_closed(ws, within=10)
            assert (closed.code, closed.reason) == (1001, "server going away")
    assert "shutting down: closed 2 WebSocket(s) with 1001" in worker.output()
