"""Fixtures that start and stop the real stack: redis-server, a migrated database, daphne."""

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.stack import DaphneWorker, RedisServer, base_env, database_migrate

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/system/" in str(item.fspath):
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_server(stack_dir) -> Iterator[RedisServer]:
    server = RedisServer(workdir=stack_dir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(stack_dir) -> str:
    """A SQLite file migrated once for the whole session, shared by every worker."""
    url = f"sqlite:///{stack_dir / 'system.sqlite3'}"
    database_migrate(base_env(database_url=url, log_file=stack_dir / "migrate.log", redis_url=None))
    return url


@pytest.fixture
def start_worker(stack_dir, database_url, redis_server) -> Iterator[Callable[..., DaphneWorker]]:
    """Start daphne workers: `start_worker(redis=True, **env)`; all stopped at teardown."""
    started: list[DaphneWorker] = []

    def start(*, redis: bool = True, name: str | None = None, **env: str) -> DaphneWorker:
        name = name or f"worker{next(_names)}"
        workdir = stack_dir / name
        environment = base_env(
            database_url=database_url,
            log_file=workdir / "errors.log",
            redis_url=redis_server.url if redis else None,
        )
        environment.update(env)
        worker = DaphneWorker(env=environment, workdir=workdir, name=name)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory, database_url, redis_server) -> Iterator[DaphneWorker]:
    """One worker (on Redis) shared by a module's tests that need no special settings."""
    workdir = tmp_path_factory.mktemp("shared")
    env = base_env(
        database_url=database_url, log_file=workdir / "errors.log", redis_url=redis_server.url
    )
    worker = DaphneWorker(env=env, workdir=workdir, name="shared").start()
    yield worker
    worker.stop()


def user_register(worker: DaphneWorker, username: str | None = None) -> dict:
    """Register a new user over REST and log in: {"username", "id", "access", "refresh"}."""
    username = username or f"user{next(_names)}"
    with httpx.Client(base_url=worker.http, timeout=10) as client:
        created = client.post(
            "/api/auth/register/",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        tokens = client.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
    return {"username": username, "id": created.json()["id"], **tokens.json()}


@pytest.fixture
def new_user() -> Callable[[DaphneWorker], dict]:
    return user_register
