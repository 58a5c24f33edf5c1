"""realtime.session.credentials: the expiry and auth timers wait as loop timer handles, and a
task runs only from the moment one fires, as a task of the worker's hub."""

import asyncio
import logging
import time
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator

from realtime.hub import Hub
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.session.consumer import SessionConsumer
from tests.conftest import access_for
from tests.unit.realtime.ws import assert_closed, assert_error_then_closed

pytestmark = pytest.mark.django_db(transaction=True)


def credentials_tasks() -> list[asyncio.Task]:
    """The pending tasks running a coroutine of `Credentials`."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_coro().__qualname__.startswith("Credentials.")
    ]


async def open_idle(connect, raw: str) -> tuple[WebsocketCommunicator, dict]:
    """A session past its welcome and one ping: nothing of its own left to run."""
    socket = await connect(f"/ws/session/?token={raw}")
    welcome = await socket.receive_json_from()
    assert welcome["type"] == "welcome", welcome
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    return socket, welcome


def only_session(worker_hub: Hub) -> SessionConsumer:
    (session,) = worker_hub.health.sessions
    assert isinstance(session, SessionConsumer)
    return session


def seconds_until(handle: asyncio.TimerHandle) -> float:
    return handle.when() - asyncio.get_running_loop().time()


async def test_an_idle_session_waits_for_its_expiry_on_a_timer_handle_not_a_task(
    connect, user, settings, worker_hub
):
    settings.WS_EXPIRY_WARNING = 30
    token = access_for(user, lifetime=timedelta(seconds=300))

    await open_idle(connect, str(token))

    assert credentials_tasks() == []
    timer = only_session(worker_hub).credentials.expiry_timer
    assert isinstance(timer, asyncio.TimerHandle)
    assert seconds_until(timer) == pytest.approx(token["exp"] - 30 - time.time(), abs=0.5)


async def test_a_connection_waiting_for_its_auth_frame_runs_no_task_for_the_timeout(connect):
    socket = await connect("/ws/session/")

    assert await socket.receive_nothing(0.05)
    assert credentials_tasks() == []


async def test_a_refresh_cancels_the_old_expiry_handle_and_waits_on_a_new_one(
    connect, user, settings, worker_hub
):
    settings.WS_EXPIRY_WARNING = 30
    socket, _ = await open_idle(connect, str(access_for(user)))
    credentials = only_session(worker_hub).credentials
    before = credentials.expiry_timer
    new = access_for(user, lifetime=timedelta(seconds=900))

    await socket.send_json_to({"type": "refresh", "token": str(new)})

    assert (await socket.receive_json_from())["type"] == "refreshed"
    after = credentials.expiry_timer
    assert isinstance(before, asyncio.TimerHandle) and before.cancelled()
    assert isinstance(after, asyncio.TimerHandle) and not after.cancelled()
    assert seconds_until(after) == pytest.approx(new["exp"] - 30 - time.time(), abs=0.5)
    assert credentials_tasks() == []


async def test_a_disconnect_cancels_the_expiry_handle(connect, user, worker_hub):
    socket, _ = await open_idle(connect, str(access_for(user)))
    timer = only_session(worker_hub).credentials.expiry_timer

    await socket.disconnect()

    assert isinstance(timer, asyncio.TimerHandle) and timer.cancelled()


async def test_the_close_at_expiry_is_a_security_event_token_expired_closing_4001(
    connect, user, settings, caplog
):
    caplog.set_level(logging.INFO)
    settings.WS_EXPIRY_WARNING = 0
    token = access_for(user, lifetime=timedelta(seconds=1))
    socket, welcome = await open_idle(connect, str(token))

    assert (await socket.receive_json_from(2))["type"] == "expiring"
    await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)
    assert time.time() >= token["exp"]
    security = [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]
    assert any(
        m.startswith(f"token expired, closing 4001: session_id={welcome['session_id']} ")
        for m in security
    ), security


async def test_an_expiring_frame_that_fails_to_send_closes_1011_and_logs_the_error(
    connect, user, settings, monkeypatch, caplog
):
    settings.WS_EXPIRY_WARNING = 30
    send_frame = SessionConsumer.send_frame

    async def failing_expiring(self, kind, msg_id=None, **fields):
        if kind == "expiring":
            raise RuntimeError("encoder broke")
        await send_frame(self, kind, msg_id, **fields)

    monkeypatch.setattr(SessionConsumer, "send_frame", failing_expiring)
    socket = await connect(f"/ws/session/?token={access_for(user, lifetime=timedelta(seconds=20))}")
    welcome = await socket.receive_json_from()

    await assert_closed(socket, CloseCode.INTERNAL_ERROR)
    [record] = [r for r in caplog.records if r.getMessage().startswith("expiry timer failed")]
    assert record.getMessage() == (
        f"expiry timer failed, closing 1011: session_id={welcome['session_id']}"
    )
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


async def test_a_fired_expiry_runs_as_a_hub_task_that_the_hub_cancels_at_shutdown(
    connect, user, settings, monkeypatch, worker_hub
):
    settings.WS_EXPIRY_WARNING = 30
    send_frame = SessionConsumer.send_frame
    stuck = asyncio.Event()

    async def stuck_expiring(self, kind, msg_id=None, **fields):
        if kind == "expiring":
            stuck.set()
            await asyncio.Event().wait()
        await send_frame(self, kind, msg_id, **fields)

    monkeypatch.setattr(SessionConsumer, "send_frame", stuck_expiring)
    await open_idle(connect, str(access_for(user, lifetime=timedelta(seconds=20))))
    await asyncio.wait_for(stuck.wait(), 1)

    (task,) = credentials_tasks()
    assert task in worker_hub.tasks()
    await worker_hub.aclose()
    assert task.cancelled()
