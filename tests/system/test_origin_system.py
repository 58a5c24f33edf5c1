"""The WebSocket origin check through real daphne: browser origins, ports, and no Origin."""

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.system.stack import Worker
from tests.system.wsclient import frame_recv, ws_connect

APP_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def allowlist_worker(start_module_worker) -> Worker:
    return start_module_worker(WS_ALLOWED_ORIGINS=APP_ORIGIN)


async def echo_works(worker: Worker, origin: str | None) -> bool:
    """Open /ws/echo/ with `origin` and echo once: True, or False when refused with 403."""
    try:
        async with ws_connect(worker, "/ws/echo/", origin=origin) as ws:
            await ws.send("hi")
            assert await frame_recv(ws) == "Server received: hi"
            return True
    except InvalidStatus as e:
        assert e.response.status_code == 403
        return False


async def test_foreign_origin_is_refused_403_and_logged(shared_worker):
    assert not await echo_works(shared_worker, "http://evil.example")
    log = shared_worker.output_wait("origin='http://evil.example'")
    assert "websocket origin refused: origin='http://evil.example' path=/ws/echo/" in log
    assert "websocket origin refused: origin='http://evil.example'" in shared_worker.log_text()


async def test_same_origin_including_the_port_is_accepted(shared_worker):
    assert await echo_works(shared_worker, f"http://127.0.0.1:{shared_worker.port}")


async def test_same_host_on_another_port_is_refused(shared_worker):
    assert not await echo_works(shared_worker, f"http://127.0.0.1:{shared_worker.port + 1}")


async def test_no_origin_is_accepted(shared_worker):
    assert await echo_works(shared_worker, None)


async def test_allowed_origin_is_accepted_exactly(allowlist_worker):
    assert await echo_works(allowlist_worker, APP_ORIGIN)


async def test_allowed_origin_on_another_port_is_refused(allowlist_worker):
    assert not await echo_works(allowlist_worker, "https://app.example.com:8443")
    allowlist_worker.output_wait("origin='https://app.example.com:8443'")


async def test_allowlist_still_refuses_a_foreign_origin(allowlist_worker):
    assert not await echo_works(allowlist_worker, "https://evil.example.com")


async def test_refused_origins_count_toward_the_connection_rate_and_stay_403(start_worker):
    worker = start_worker(WS_CONNECTS_PER_MINUTE="3")
    for _ in range(3):
        assert not await echo_works(worker, "http://evil.example")

    async with ws_connect(worker, "/ws/echo/", origin=f"http://127.0.0.1:{worker.port}") as ws:
        with pytest.raises(ConnectionClosed):
            await frame_recv(ws)
    assert (ws.close_code, ws.close_reason) == (4008, "rate limited")
    # Over the limit, a foreign origin is still told 403, like any other.
    assert not await echo_works(worker, "http://evil.example")
