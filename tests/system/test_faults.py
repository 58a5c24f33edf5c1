"""Faults survived, with real processes: Redis stopped and restarted, the database locked."""

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.databases import (
    database_create,
    database_drop,
    database_locked,
    database_with_timeout,
    postgres_server_url,
)
from tests.system.stack import Worker, base_env, database_migrate
from tests.system.wsclient import frame_json, session_open, until_closed, ws_connect


@pytest.fixture
def private_database(tmp_path, database_url) -> Iterator[str]:
    """A database of this test's own (a copy, or a new migrated one) that it may lock."""
    server = postgres_server_url()
    if server is None:
        copy = tmp_path / "locked.sqlite3"
        shutil.copyfile(Path(database_url.removeprefix("sqlite:///")), copy)
        yield f"sqlite:///{copy}"
        return
    url = database_create(server)
    database_migrate(base_env(database_url=url, log_file=tmp_path / "migrate.log", redis_url=None))
    yield url
    database_drop(url)


def worker_start(tmp_path: Path, name: str, *, database: str, redis_url: str | None, **env):
    workdir = tmp_path / name
    environment = base_env(
        database_url=database, log_file=workdir / "errors.log", redis_url=redis_url
    )
    environment.update(env)
    return Worker(env=environment, workdir=workdir, name=name).start()


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(name: str, **kwargs) -> Worker:
        worker = worker_start(tmp_path, name, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def readyz(worker: Worker) -> tuple[int, dict]:
    with http_client(worker) as client:
        response = client.get("/readyz")
    return response.status_code, response.json()


async def test_a_redis_outage_keeps_sessions_and_logins_working_and_recovers_revocation(
    private_redis, workers, database_url
):
    worker1 = workers("redis-w1", database=database_url, redis_url=private_redis.url)
    worker2 = workers("redis-w2", database=database_url, redis_url=private_redis.url)
    user = user_register(worker1)
    assert readyz(worker1) == (200, {"database": "ok", "channel_layer": "ok"})

    async with (
        session_open(worker1, user["access"]) as (session, _),
        ws_connect(worker1, "/ws/echo/") as echo,
    ):
        private_redis.stop()

        # Redis is down: echo, session echo and ping carry on; the connection stays open.
        await echo.send("still here")
        assert await asyncio.wait_for(echo.recv(), 5) == "Server received: still here"
        await session.send('{"type":"echo","data":{"n":1},"id":"a"}')
        assert await frame_json(session, 5) == {"type": "echo", "data": {"n": 1}, "id": "a"}
        await session.send('{"type":"ping"}')
        assert await frame_json(session, 5) == {"type": "pong"}

        status, body = readyz(worker1)
        assert status == 503
        assert body["database"] == "ok" and body["channel_layer"] != "ok"

        # Logins still work: the throttle fails open, never with a 500.
        with http_client(worker2) as client:
            login = client.post(
                "/api/auth/token/", json={"username": user["username"], "password": PASSWORD}
            )
        assert login.status_code == 200, login.text
        fresh = login.json()

        private_redis.start()  # same port, empty: every group membership is gone
        await asyncio.sleep(10)  # the promise: within 10 s everything works again

        assert readyz(worker1) == (200, {"database": "ok", "channel_layer": "ok"})
        await session.send('{"type":"ping","id":1}')
        assert await frame_json(session, 5) == {"type": "pong", "id": 1}

        # Revocations reach worker 1 again: logout-all through worker 2 closes the session.
        with http_client(worker2) as client:
            response = client.post(
                "/api/auth/logout-all/", headers={"Authorization": f"Bearer {fresh['access']}"}
            )
        assert response.status_code == 204
        closed = await until_closed(session, within=5)
        assert closed.json() == [
            {"type": "error", "code": "session_revoked", "message": "Session revoked"}
        ]
        assert (closed.code, closed.reason) == (4501, "session revoked")

    log = worker1.log_text()
    assert "channel layer unreachable" in log
    assert "channel layer reachable again" in log


async def test_a_locked_database_refuses_new_sessions_with_1013_and_keeps_open_ones(
    private_database, workers
):
    worker = workers("db-locked", database=private_database, redis_url=None)
    user = user_register(worker)

    async with session_open(worker, user["access"]) as (session, _):
        with database_locked(private_database):
            async with ws_connect(worker, f"/ws/session/?token={user['access']}") as refused:
                closed = await until_closed(refused, within=10)
            assert closed.json() == [
                {
                    "type": "error",
                    "code": "unavailable",
                    "message": "Temporarily unavailable; try again later",
                }
            ]
            assert (closed.code, closed.reason) == (1013, "try again later")

            await session.send('{"type":"ping","id":"during"}')
            assert await frame_json(session, 5) == {"type": "pong", "id": "during"}
            status, body = readyz(worker)
            assert status == 503
            assert body == {"database": "timeout after 1 s", "channel_layer": "ok"}

        # Unlocked: back to normal, without restarting anything.
        deadline = time.monotonic() + 10
        while readyz(worker)[0] != 200:
            assert time.monotonic() < deadline, "readyz did not recover"
            await asyncio.sleep(0.2)
        async with session_open(worker, user["access"]) as (_, welcome):
            assert welcome["user"] == {"id": user["id"], "username": user["username"]}
        await session.send('{"type":"ping"}')
        assert await frame_json(session, 5) == {"type": "pong"}

    assert "websocket auth failed: reason=database unavailable" in worker.log_text()


def test_rest_answers_503_json_while_the_database_is_locked(private_database, workers):
    # A per-query time limit from the URL: the request gives up after 2 s.
    worker = workers(
        "db-locked-rest", database=database_with_timeout(private_database, 2), redis_url=None
    )
    user = user_register(worker)
    with (
        database_locked(private_database),
        httpx.Client(base_url=worker.http, timeout=60, trust_env=False) as client,
    ):
        response = client.get(
            "/api/auth/me/", headers={"Authorization": f"Bearer {user['access']}"}
        )
    assert response.status_code == 503
    assert response.json() == {
        "detail": "Temporarily unavailable; try again later.",
        "code": "unavailable",
    }
