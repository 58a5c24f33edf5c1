"""Real processes for system tests: a redis-server, daphne workers and nginx on free loopback
ports (a worker may bind another loopback address, 127.0.0.2 or .3, standing for another host).

Every process is started here and stopped here, by PID; nothing is looked up by name.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from deploy.cluster import Upstream, nginx_start, port_wait
from deploy.servers import SERVERS

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "system-test-secret-key-not-for-production-0123456789abcdef"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (a loopback address) that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_stop(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Stop one process we started: `sig`, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@dataclass
class RedisServer:
    """A private redis-server on a free port; can be stopped and started again on that port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    args: tuple[str, ...] = ()  # more redis-server options (a replica's, a password, TLS files)
    password: str | None = None  # what the test's own client authenticates with
    # Set: TLS only, on `port` (the --tls-* files go in `args`); the CA the test's client trusts.
    tls_ca: Path | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls_ca else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this server for the test itself (close it when done)."""
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls_ca)} if self.tls_ca else {}
        return redis.Redis("127.0.0.1", self.port, password=self.password, socket_timeout=2, **tls)

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (make test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        listen = ("--port", "0", "--tls-port") if self.tls_ca else ("--port",)
        args = [binary, *listen, str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir), *self.args]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        port_wait(self.port, proc=self.proc)
        client = self.client()
        try:
            client.ping()
        except Exception:  # listening, but not to this client (TLS, a password): not left running
            self.stop()
            raise
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a word, as a crashed host's does."""
        if self.proc is not None:
            process_stop(self.proc, sig=signal.SIGKILL)
            self.proc = None

    def flush(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()


def base_env(*, database_url: str, log_file: Path, redis_url: str | None) -> dict[str, str]:
    """The environment of a production-like worker (DEBUG off) for system tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_", "WS_"))}
    env.update(
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        LOG_FILE=str(log_file),
        REDIS_URL=redis_url or "",
        DJANGO_ENV_FILE="",  # never a developer's .env
        # Every test connects from 127.0.0.1: the per-IP rate has its own tests.
        WS_CONNECTS_PER_MINUTE="100000",
        PYTHONUNBUFFERED="1",
    )
    return env


def database_migrate(env: dict[str, str]) -> None:
    """Run the real migrations against the database in `env`."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )


# What each server writes besides its default logs, so that a test sees every access line.
ACCESS_LOG_ARGS = {"daphne": ("--access-log", "-"), "uvicorn": (), "granian": ("--access-log",)}


@dataclass
class Worker:
    """Switchboard under one ASGI server (`server`: daphne, uvicorn or granian, started with
    the command line of deploy/servers.py) in a subprocess, its output kept in files, bound to
    `host` (another loopback address stands for another host)."""

    env: dict[str, str]
    workdir: Path
    name: str = "worker"
    port: int = 0  # 0: a free port on `host`
    proc: subprocess.Popen | None = None
    server_args: tuple[str, ...] = ()  # extra options for the server
    server: str = "daphne"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.host)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port): what nginx's upstream names (`NginxProxy.worker_ports`)."""
        return self.host, self.port

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    def command(self) -> list[str]:
        program, *args = SERVERS[self.server].argv(
            host=self.host,
            port=self.port,
            max_message_bytes=self.env.get("WS_MAX_MESSAGE_BYTES", "65536"),
            extra=(*ACCESS_LOG_ARGS[self.server], *self.server_args),
        )
        return [sys.executable, "-m", program, *args]

    def start(self) -> "Worker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=out, stderr=err
            )
        try:
            port_wait(self.port, host=self.host, timeout=30, proc=self.proc)
        except Exception as e:
            raise RuntimeError(f"{self.server} did not start:\n{self.output()}") from e
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            process_stop(self.proc, sig=sig)
            self.proc = None

    def output(self) -> str:
        """Everything the worker wrote: stdout (access log), stderr and the error log file."""
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path)]
        log_file = Path(self.env["LOG_FILE"])
        if log_file.exists():
            parts.append(log_file.read_text(errors="replace"))
        return "\n".join(parts)

    def log_text(self) -> str:
        """The worker's LOG_FILE (warnings, errors and security events); empty before any."""
        log_file = Path(self.env["LOG_FILE"])
        return log_file.read_text(errors="replace") if log_file.exists() else ""

    def output_wait(self, text: str, *, timeout: float = 5.0) -> str:
        """Wait until `text` appears in `output()` and return the output; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.output()
            if text in output:
                return output
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not in {self.name}'s output within {timeout} s")
            time.sleep(0.05)

    def rss_kib(self) -> int:
        """The worker's resident memory, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@dataclass
class NginxProxy:
    """Debian's nginx running the shipped site config (deploy/nginx/switchboard.conf) on a
    free port, in front of `worker_ports` (ports on 127.0.0.1, or `Worker.address` pairs)."""

    workdir: Path
    worker_ports: list[Upstream]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> "NginxProxy":
        self.proc = nginx_start(
            listen_port=self.port, worker_ports=self.worker_ports, workdir=self.workdir
        )
        port_wait(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc, sig=signal.SIGQUIT)
            self.proc = None

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""
