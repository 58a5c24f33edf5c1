"""Fixtures that start and stop the real stack: redis-server, a migrated database, workers."""

import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.cluster import Upstream
from tests.system.databases import database_create, database_drop, postgres_server_url
from tests.system.stack import (
    ROOT,
    NginxProxy,
    RedisServer,
    Worker,
    base_env,
    database_migrate,
)

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)

WorkerStarter = Callable[..., Worker]


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
def database_url(stack_dir) -> Iterator[str]:
    """One database migrated once for the whole session, shared by every worker: a SQLite
    file, or a new PostgreSQL database when the suite runs on PostgreSQL."""
    server = postgres_server_url()
    url = database_create(server) if server else f"sqlite:///{stack_dir / 'system.sqlite3'}"
    database_migrate(base_env(database_url=url, log_file=stack_dir / "migrate.log", redis_url=None))
    yield url
    if server:
        database_drop(url)


def _worker_starter(
    stack_dir: Path, database_url: str, redis_server: RedisServer, started: list[Worker]
) -> WorkerStarter:
    def start(
        *,
        redis: bool = True,
        name: str | None = None,
        server_args: tuple[str, ...] = (),
        server: str = "daphne",
        host: str = "127.0.0.1",
        **env: str,
    ) -> Worker:
        name = name or f"worker{next(_names)}"
        workdir = stack_dir / name
        environment = base_env(
            database_url=database_url,
            log_file=workdir / "errors.log",
            redis_url=redis_server.url if redis else None,
        )
        environment.update(env)
        worker = Worker(
            env=environment,
            workdir=workdir,
            name=name,
            server_args=server_args,
            server=server,
            host=host,
        )
        started.append(worker)
        return worker.start()

    return start


@pytest.fixture
def start_worker(stack_dir, database_url, redis_server) -> Iterator[WorkerStarter]:
    """Start workers: `start_worker(redis=True, server="daphne", host="127.0.0.1", **env)`; all
    stopped at teardown."""
    started: list[Worker] = []
    yield _worker_starter(stack_dir, database_url, redis_server, started)
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def start_module_worker(stack_dir, database_url, redis_server) -> Iterator[WorkerStarter]:
    """Like `start_worker`, but the workers live until the module's last test has run."""
    started: list[Worker] = []
    yield _worker_starter(stack_dir, database_url, redis_server, started)
    for worker in started:
        worker.stop()


@pytest.fixture
def start_nginx(tmp_path) -> Iterator[Callable[..., NginxProxy]]:
    """Start nginx with the shipped site config: `start_nginx(worker_ports)` (ports on
    127.0.0.1, or `Worker.address` pairs); stopped after."""
    started: list[NginxProxy] = []

    def start(worker_ports: list[Upstream]) -> NginxProxy:
        proxy = NginxProxy(workdir=tmp_path / f"nginx{len(started)}", worker_ports=worker_ports)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own: stopping it disturbs nobody else."""
    server = RedisServer(workdir=tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory, database_url, redis_server) -> Iterator[Worker]:
    """One worker (on Redis) shared by a module's tests that need no special settings."""
    workdir = tmp_path_factory.mktemp("shared")
    env = base_env(
        database_url=database_url, log_file=workdir / "errors.log", redis_url=redis_server.url
    )
    worker = Worker(env=env, workdir=workdir, name="shared").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def collected_static(stack_dir) -> Path:
    """`manage.py collectstatic` run once (DEBUG off, whitenoise's manifest storage)."""
    static_root = stack_dir / "static"
    env = base_env(
        database_url=f"sqlite:///{stack_dir / 'collectstatic.sqlite3'}",
        log_file=stack_dir / "collectstatic.log",
        redis_url=None,
    )
    env["DJANGO_STATIC_ROOT"] = str(static_root)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return static_root


def http_client(worker: Worker) -> httpx.Client:
    """An HTTP client for `worker` that never goes through a proxy from the environment."""
    return httpx.Client(base_url=worker.http, timeout=10, trust_env=False)


def user_register(worker: Worker, username: str | None = None) -> dict:
    """Register a new user over REST and log in: {"username", "id", "access", "refresh"}."""
    username = username or f"user{next(_names)}"
    with http_client(worker) as client:
        created = client.post(
            "/api/auth/register/",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        tokens = client.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
    return {"username": username, "id": created.json()["id"], **tokens.json()}


def token_refresh(worker: Worker, refresh: str) -> dict:
    """Spend a refresh token over REST: the new {"access", "refresh"} pair."""
    with http_client(worker) as client:
        response = client.post("/api/auth/token/refresh/", json={"refresh": refresh})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def new_user() -> Callable[[Worker], dict]:
    return user_register
