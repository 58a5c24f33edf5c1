"""`make cluster`: Redis, two daphne workers and nginx in front, on loopback; Ctrl-C stops all.

For trying several workers locally, with the same nginx site config as production
(deploy/nginx/switchboard.conf). Everything it starts it stops, by PID. Ports, folders and
the database come from the environment: CLUSTER_PORT (nginx, 8080), CLUSTER_WORKER_PORTS
("8001,8002"), CLUSTER_REDIS_PORT (6380), CLUSTER_DIR (its pid, log, Redis and metrics
files: .cluster), DATABASE_URL (default: db.sqlite3).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_CONF = ROOT / "deploy" / "nginx" / "switchboard.conf"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


# A worker nginx sends to: a port on 127.0.0.1, or a (host, port) pair.
Upstream = int | tuple[str, int]


def upstream_address(worker: Upstream) -> str:
    """`host:port` of one upstream server line."""
    host, port = ("127.0.0.1", worker) if isinstance(worker, int) else worker
    return f"{host}:{port}"


def nginx_conf(
    *, site: str, listen_port: int, worker_ports: Sequence[Upstream], workdir: Path
) -> str:
    """A complete nginx.conf that runs `site` (the production site config) in the foreground
    from `workdir`, listening on 127.0.0.1:`listen_port` in front of `worker_ports` (ports on
    127.0.0.1, or (host, port) pairs)."""
    servers = "".join(f"    server {upstream_address(w)};\n" for w in worker_ports)
    site, upstreams = re.subn(
        r"(upstream switchboard \{\n)(?:\s*server [^;]+;\n)+", rf"\g<1>{servers}", site
    )
    site, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", site)
    site, logs = re.subn(r"access_log \S+", f"access_log {workdir / 'access.log'}", site)
    if (upstreams, listens, logs) != (1, 1, 1):
        raise ValueError(f"{SITE_CONF} no longer has one upstream, one listen and one access_log")
    temp_paths = "".join(f"    {name}_temp_path {workdir / name};\n" for name in TEMP_DIRS)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers may then read workdir
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n{temp_paths}{site}}}\n"
    )


def nginx_start(
    *,
    listen_port: int,
    worker_ports: Sequence[Upstream],
    workdir: Path,
    site: str | None = None,
) -> subprocess.Popen:
    """nginx (Debian's, from PATH) with the rendered config, in the foreground; `site` is the
    site config's text (default: deploy/nginx/switchboard.conf's)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in TEMP_DIRS:
        (workdir / name).mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        nginx_conf(
            site=SITE_CONF.read_text() if site is None else site,
            listen_port=listen_port,
            worker_ports=worker_ports,
            workdir=workdir,
        )
    )
    return subprocess.Popen(
        [binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf)],
        start_new_session=True,
    )


def port_wait(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    proc: subprocess.Popen | None = None,
) -> None:
    """Wait until something accepts on `host`:`port`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop each in turn, in the given order: SIGTERM (nginx: SIGQUIT, its graceful stop),
    SIGKILL after 20 s."""
    for proc in procs:
        if proc.poll() is None:
            is_nginx = Path(str(proc.args[0])).name == "nginx"
            proc.send_signal(signal.SIGQUIT if is_nginx else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def manage_command(*, defaulted_debug: bool) -> str:
    """How to run manage.py against this cluster's database from a fresh shell in the repo."""
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    # Only a DEBUG this script chose itself must be said: the developer's own is in their shell.
    return f"{'DJANGO_DEBUG=1 ' if defaulted_debug else ''}{shown} manage.py"


def cluster_banner(
    *, port: int, worker_ports: list[int], redis_port: int, manage: str, access_ttl: int
) -> str:
    """What `make cluster` prints once everything listens: each URL answers, each command works
    as pasted (tests/system/test_cluster_browser.py runs them)."""
    site = f"http://127.0.0.1:{port}"
    minutes, seconds = divmod(access_ttl, 60)
    lifetime = f"{access_ttl} s" if seconds else f"{minutes} minute{'s' * (minutes != 1)}"
    return (
        f"\nSwitchboard cluster: nginx on {site}/ in front of daphne workers on ports "
        f"{', '.join(map(str, worker_ports))}, Redis on {redis_port}.\n"
        f"  Console:   {site}/  (register, log in, sessions and rooms, through nginx)\n"
        f"  API docs:  {site}/api/docs/  (Swagger UI: every REST endpoint)\n"
        f"  Admin:     {site}/admin/  (WebSocket sessions: the worker each landed on)\n"
        f"  Sessions:  ws://127.0.0.1:{port}/ws/session/?ticket=<ticket>\n"
        "             a single-use ticket from POST /api/realtime/ticket/ with\n"
        "             Authorization: Bearer <access> (or send that header on the handshake)\n"
        f"  Access tokens last {lifetime} (JWT_ACCESS_TTL={access_ttl}). Close 4001 means the\n"
        "  token expired: get a new one from POST /api/auth/token/refresh/ and reconnect.\n"
        "  Create an admin user, in another shell in this folder (the same DATABASE_URL, if set):\n"
        f"    {manage} createsuperuser\n"
        "Ctrl-C stops everything.\n"
    )


def main() -> int:
    port = int(os.environ.get("CLUSTER_PORT", "8080"))
    worker_ports = [int(p) for p in os.environ.get("CLUSTER_WORKER_PORTS", "8001,8002").split(",")]
    redis_port = int(os.environ.get("CLUSTER_REDIS_PORT", "6380"))
    workdir = Path(os.environ.get("CLUSTER_DIR") or ROOT / ".cluster").resolve()
    metrics_dir = workdir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # the workers' shared metrics start empty
    metrics_dir.mkdir(parents=True)
    env = dict(os.environ)
    defaulted_debug = "DJANGO_DEBUG" not in env
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
    env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["TRUSTED_PROXIES"] = "127.0.0.1/32"  # nginx: client IPs from its X-Forwarded-For
    python = sys.executable
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True)

    # Started in their own sessions, so Ctrl-C reaches only this script, which stops them in
    # order: the workers first (their 1001 close frames still pass through nginx), then
    # nginx, then Redis.
    redis_procs: list[subprocess.Popen] = []
    worker_procs: list[subprocess.Popen] = []
    nginx_procs: list[subprocess.Popen] = []
    interrupted = False

    def on_signal(signum, frame):
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        redis = shutil.which("redis-server")
        if redis is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis)")
        (workdir / "redis").mkdir(exist_ok=True)
        redis_procs.append(
            subprocess.Popen(
                [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--dir", str(workdir / "redis")],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        port_wait(redis_port, proc=redis_procs[0])
        for worker_port in worker_ports:
            worker_procs.append(
                subprocess.Popen(
                    [python, "-m", "daphne", "-b", "127.0.0.1"]
                    + ["-p", str(worker_port), "config.asgi:application"],
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                )
            )
        for worker_port, proc in zip(worker_ports, worker_procs, strict=True):
            port_wait(worker_port, proc=proc)
        nginx_procs.append(
            nginx_start(listen_port=port, worker_ports=worker_ports, workdir=workdir / "nginx")
        )
        port_wait(port, proc=nginx_procs[0])
        print(
            cluster_banner(
                port=port,
                worker_ports=worker_ports,
                redis_port=redis_port,
                manage=manage_command(defaulted_debug=defaulted_debug),
                access_ttl=int(env.get("JWT_ACCESS_TTL") or 300),
            ),
            flush=True,
        )
        while not interrupted:
            for proc in redis_procs + worker_procs + nginx_procs:
                if proc.poll() is not None:
                    print(f"{proc.args[0]} exited with {proc.returncode}: stopping the cluster")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop(worker_procs + nginx_procs + redis_procs)


if __name__ == "__main__":
    sys.exit(main())
