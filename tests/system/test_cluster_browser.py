"""`make cluster` as a newcomer meets it: the real `make cluster` (Redis, two daphne workers and
Debian's nginx running deploy/nginx/switchboard.conf) on free ports, none of them 80, its
banner's URLs and command, and Chromium driving the console and the admin through nginx.

And a proxy that drops the port from Host (nginx's `$host`, the shipped config's old mistake):
the console says the handshake was refused, not that the connection was lost.
"""

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from deploy.cluster import SITE_CONF, nginx_start
from tests.system import test_console_browser as console_browser
from tests.system.banner import (
    ADMIN,
    Banner,
    admin_login,
    command_run,
    fresh_shell_env,
    group_stop,
    output_wait,
    session_with_header,
    url_get,
    ws_url_check,
)
from tests.system.conftest import PASSWORD
from tests.system.stack import ROOT, free_port, port_wait, process_stop
from tests.system.test_console_browser import (
    console_login,
    log_entries,
    screenshot,
    session_connect,
)

# The console tests' fixtures: one Chromium for the module, a fresh context per page.
browser = console_browser.browser
new_page = console_browser.new_page

BANNER_START = "\nSwitchboard cluster: "
BANNER_END = "Ctrl-C stops everything.\n"
HANDSHAKE_FAILED = (
    "closed 1006: handshake failed — the server refused the connection (check the origin / "
    "proxy Host header) or cannot be reached"
)
BROWSER_ADMIN = {
    "username": "browser-admin",
    "email": "b@example.com",
    "password": ADMIN["password"],
}


@dataclass
class MakeCluster:
    base: str
    env: dict[str, str]  # a fresh shell's, pointed at the cluster's database
    output_path: Path

    @property
    def banner(self) -> Banner:
        output = self.output_path.read_text(errors="replace")
        start = output.index(BANNER_START) + 1
        return Banner(output[start : output.index(BANNER_END, start) + len(BANNER_END)])


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def make_cluster(tmp_path_factory) -> Iterator[MakeCluster]:
    """`make cluster` on free ports, on this venv (its install step taken as done: `-o`)."""
    workdir = tmp_path_factory.mktemp("make-cluster")
    port, worker1, worker2, redis_port = distinct_free_ports(4)
    env = fresh_shell_env(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "LOG_FILE": str(workdir / "errors.log"),
            "DJANGO_STATIC_ROOT": str(workdir / "static"),
            "DJANGO_ENV_FILE": "",  # never a developer's .env
        }
    )
    cluster_env = dict(
        env,
        CLUSTER_PORT=str(port),
        CLUSTER_WORKER_PORTS=f"{worker1},{worker2}",
        CLUSTER_REDIS_PORT=str(redis_port),
        CLUSTER_DIR=str(workdir / "cluster"),
    )
    venv = Path(sys.prefix)
    output_path = workdir / "make-cluster.out"
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "cluster", f"VENV={venv}", "-o", f"{venv}/.runtime"],
            cwd=ROOT,
            env=cluster_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        output_wait(output_path, BANNER_END, proc=proc, timeout=120)
        yield MakeCluster(base=f"http://127.0.0.1:{port}", env=env, output_path=output_path)
    finally:
        group_stop(proc, sig=signal.SIGINT)  # Ctrl-C: the script stops what it started
    for stopped in (port, worker1, worker2, redis_port):
        with pytest.raises(TimeoutError):
            port_wait(stopped, timeout=0.5)


def test_make_cluster_prints_a_ticket_not_a_token_and_what_close_4001_means(make_cluster):
    banner = make_cluster.banner
    base, ws = make_cluster.base, make_cluster.base.replace("http", "ws")

    assert banner.urls == [
        f"{base}/",
        f"{base}/api/docs/",
        f"{base}/admin/",
        f"{ws}/ws/session/?ticket=<ticket>",
    ]
    assert "?token=" not in banner.text
    assert "POST /api/realtime/ticket/ with\n" in banner.text
    assert "Authorization: Bearer <access> (or send that header on the handshake)" in banner.text
    assert (
        "  Access tokens last 5 minutes (JWT_ACCESS_TTL=300). Close 4001 means the\n"
        "  token expired: get a new one from POST /api/auth/token/refresh/ and reconnect.\n"
    ) in banner.text
    python = Path(sys.executable)  # shown from the repository, as a newcomer pastes it
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    assert banner.commands == [f"DJANGO_DEBUG=1 {shown} manage.py createsuperuser"]


def test_every_url_and_command_make_cluster_prints_works_through_nginx(make_cluster):
    banner = make_cluster.banner
    answers = {url: url_get(url) for url in banner.urls if url.startswith("http")}
    assert {url: r.status_code for url, r in answers.items()} == dict.fromkeys(answers, 200)

    created = [command_run(command, make_cluster.env) for command in banner.commands]
    assert [(r.returncode, r.stdout, r.stderr[-300:]) for r in created] == [
        (0, "Superuser created successfully.\n", "")
    ]
    # The admin login form through nginx on a port that is not 80: CSRF's Origin check passes.
    logged_in = admin_login(make_cluster.base)
    assert (logged_in.status_code, str(logged_in.url)) == (200, f"{make_cluster.base}/admin/")
    assert "Site administration" in logged_in.text

    with httpx.Client(base_url=make_cluster.base, timeout=10, trust_env=False) as client:
        user = {"username": "cluster-carol", "password": PASSWORD}
        created = client.post("/api/auth/register/", json={**user, "email": "c@example.com"})
        assert created.status_code == 201, created.text
        tokens = client.post("/api/auth/token/", json=user).json()
    ws_urls = [url for url in banner.urls if url.startswith("ws")]
    assert [ws_url_check(u, base=make_cluster.base, access=tokens["access"]) for u in ws_urls] == [
        "welcome"
    ]
    ws_base = make_cluster.base.replace("http", "ws")
    assert session_with_header(ws_base, tokens["access"]) == "welcome"


def test_the_console_and_the_admin_work_in_a_browser_through_make_clusters_nginx(
    new_page, make_cluster
):
    from playwright.sync_api import expect

    site = SimpleNamespace(http=make_cluster.base)
    with httpx.Client(base_url=make_cluster.base, timeout=10, trust_env=False) as client:
        registered = client.post(
            "/api/auth/register/",
            json={"username": "cluster-dave", "email": "d@example.com", "password": PASSWORD},
        )
    assert registered.status_code == 201, registered.text

    page = new_page()
    console_login(page, site, "cluster-dave")
    session_connect(page)  # the WebSocket handshake through nginx: same origin, port kept
    expect(log_entries(page, "in", '"type":"welcome"')).to_have_count(1)
    page.get_by_test_id("echo-input").fill("through nginx")
    page.get_by_test_id("echo-send").click()
    expect(log_entries(page, "in", '{"type":"echo","data":"through nginx","id":1}')).to_be_visible()
    page.get_by_test_id("echo-connect").click()
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")
    page.get_by_test_id("echo-text").fill("plain text")
    page.get_by_test_id("echo-text-send").click()
    expect(log_entries(page, "in", "Server received: plain text", endpoint="echo")).to_be_visible()
    expect(log_entries(page, "event", "closed")).to_have_count(0)
    screenshot(page, "cluster-console")

    banner_command = make_cluster.banner.commands[0]
    created = command_run(banner_command, make_cluster.env, admin=BROWSER_ADMIN)
    assert created.returncode == 0, created.stderr
    admin = new_page()
    admin.goto(f"{make_cluster.base}/admin/")
    admin.locator("#id_username").fill(BROWSER_ADMIN["username"])
    admin.locator("#id_password").fill(BROWSER_ADMIN["password"])
    admin.locator('input[type="submit"]').click()
    expect(admin.locator("h1")).to_have_text("Site administration")
    assert admin.url == f"{make_cluster.base}/admin/"
    screenshot(admin, "cluster-admin")


@pytest.fixture
def port_dropping_proxy(start_worker, collected_static, tmp_path) -> Iterator[SimpleNamespace]:
    """A worker behind nginx configured with `proxy_set_header Host $host` (drops the port)."""
    worker = start_worker(DJANGO_STATIC_ROOT=str(collected_static), TRUSTED_PROXIES="127.0.0.1/32")
    shipped, dropping = "proxy_set_header Host $switchboard_host;", "proxy_set_header Host $host;"
    site = SITE_CONF.read_text()
    assert site.count(shipped) == 1
    port = free_port()
    proc = nginx_start(
        listen_port=port,
        worker_ports=[worker.port],
        workdir=tmp_path / "nginx",
        site=site.replace(shipped, dropping),
    )
    try:
        port_wait(port, proc=proc)
        yield SimpleNamespace(http=f"http://127.0.0.1:{port}", worker=worker)
    finally:
        process_stop(proc, sig=signal.SIGQUIT)


def test_behind_a_proxy_that_drops_the_port_the_console_says_the_handshake_was_refused(
    new_page, port_dropping_proxy
):
    from playwright.sync_api import expect

    worker = port_dropping_proxy.worker
    with httpx.Client(base_url=worker.http, timeout=10, trust_env=False) as client:
        registered = client.post(
            "/api/auth/register/",
            json={"username": "port-dropped", "email": "p@example.com", "password": PASSWORD},
        )
    assert registered.status_code == 201, registered.text

    page = new_page()
    console_login(page, port_dropping_proxy, "port-dropped")  # HTTP passes: ports ignored there
    page.get_by_test_id("session-connect").click()

    # It retries with backoff (the server may just be restarting): each attempt says the same.
    expect(log_entries(page, "event", HANDSHAKE_FAILED).first).to_be_visible()
    expect(log_entries(page, "event", "connection lost")).to_have_count(0)
    worker.output_wait(
        f"websocket origin refused: origin='{port_dropping_proxy.http}' path=/ws/session/"
    )
    screenshot(page, "handshake-refused")


def raw_get(port: int, request: bytes) -> bytes:
    """Send `request` as is to 127.0.0.1:`port`; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: evil.example:%d\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",  # no Host: nginx's $host (`_`), never 127.0.0.1
    ],
    ids=["foreign-host", "no-host"],
)
def test_the_host_passed_on_is_still_checked_against_allowed_hosts(make_cluster, request_bytes):
    port = int(make_cluster.base.rsplit(":", 1)[1])
    allowed = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"

    assert raw_get(port, allowed % port) == b"HTTP/1.1 200 OK"
    request = request_bytes % port if b"%d" in request_bytes else request_bytes
    assert raw_get(port, request) == b"HTTP/1.1 400 Bad Request"
