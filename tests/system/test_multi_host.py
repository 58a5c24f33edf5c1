"""Two hosts behind one nginx: workers bound to 127.0.0.2 and 127.0.0.3 (each standing for a
machine of its own) share Redis and the database, and Debian's nginx runs the shipped site
config in front of both. Through nginx, from a client on a third address: sessions land on
both hosts and the registry records each one's worker and the client's own address; logout-all
served by one host closes the user's session on the other with 4501; a room message published
on either host reaches a subscriber on the other."""

import asyncio
import json
import re
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.frames import Close

from tests.system.conftest import http_client, user_register
from tests.system.stack import NginxProxy, Worker
from tests.system.test_metrics_system import metric, scrape
from tests.system.test_proxy_system import socket_from
from tests.system.test_rooms_system import subscribe, without_ts
from tests.system.test_session_registry_system import (
    SESSION_REVOKED,
    bearer,
    registry_closed,
    registry_rows,
    sessions_list,
    who,
)
from tests.system.wsclient import frame_json, until_closed, ws_connect

HOSTS = ("127.0.0.2", "127.0.0.3")
# nginx connects to the workers from 127.0.0.1 (the kernel's source address for loopback), so
# that is the balancer's range; the client is a third machine.
HOST_ENV = {
    "TRUSTED_PROXIES": "127.0.0.1/32",
    # Through nginx the Host is nginx's (127.0.0.1:port); the test also asks each worker
    # directly (its registry listing, its /metrics), by its own address.
    "DJANGO_ALLOWED_HOSTS": ",".join(("127.0.0.1", *HOSTS)),
}
CLIENT = "127.0.0.10"
# nginx's round robin alternates between the two: two sessions opened in a row land on both.
MAX_SESSIONS = 6


@pytest.fixture(scope="module")
def two_hosts(start_module_worker) -> tuple[Worker, Worker]:
    first, second = (start_module_worker(host=host, **HOST_ENV) for host in HOSTS)
    return first, second


@pytest.fixture
def proxy(two_hosts, start_nginx) -> NginxProxy:
    return start_nginx([host.address for host in two_hosts])


@dataclass
class Landed:
    """A session opened through nginx, and the host its registry row names."""

    ws: ClientConnection
    welcome: dict
    host: Worker

    @property
    def session_id(self) -> str:
        return self.welcome["session_id"]


def host_of(worker_id: str, hosts: tuple[Worker, ...]) -> Worker:
    """The host whose worker process wrote `worker_id` (`hostname:pid:random`)."""
    found = [
        host
        for host in hosts
        if re.fullmatch(
            rf"{re.escape(socket.gethostname())}:{host.proc.pid}:[0-9a-f]{{8}}", worker_id
        )
    ]
    assert len(found) == 1, f"{worker_id!r} is no worker of {[h.host for h in hosts]}"
    return found[0]


async def session_through(
    stack: AsyncExitStack, proxy: NginxProxy, user: dict
) -> tuple[ClientConnection, dict]:
    """A session of `user` opened through nginx from CLIENT (kept open by `stack`), and its
    welcome."""
    ws = await stack.enter_async_context(
        ws_connect(
            proxy, f"/ws/session/?token={user['access']}", sock=socket_from(CLIENT, proxy.port)
        )
    )
    welcome = await frame_json(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def sessions_across_hosts(
    stack: AsyncExitStack, proxy: NginxProxy, user: dict, hosts: tuple[Worker, ...]
) -> list[Landed]:
    """`user`'s sessions opened through nginx, one after another, until every host holds one
    (all of them kept open by `stack`)."""
    landed: list[Landed] = []
    while len(landed) < MAX_SESSIONS:
        ws, welcome = await session_through(stack, proxy, user)
        # Asked of a host directly: a request through nginx would take a turn of its round
        # robin, and the next session would land where the last one did.
        listed = {s["id"]: s["worker"] for s in await sessions_list(hosts[0], user)}
        landed.append(Landed(ws, welcome, host_of(listed[welcome["session_id"]], hosts)))
        if {s.host.host for s in landed} == {h.host for h in hosts}:
            return landed
    raise AssertionError(
        f"{MAX_SESSIONS} sessions through nginx all landed on {landed[0].host.host}"
    )


async def open_sessions_wait(host: Worker, expected: int, *, within: float = 5) -> None:
    """Wait until the host's own /metrics counts `expected` open sessions."""
    deadline = time.monotonic() + within
    while True:
        text = await asyncio.to_thread(scrape, host)
        now = metric(text, "switchboard_ws_connections_open", endpoint="session")
        if now == expected:
            return
        assert time.monotonic() < deadline, f"{host.host} has {now} sessions, not {expected}"
        await asyncio.sleep(0.1)


def logout_all_served(host: Worker) -> int:
    """How many `POST /api/auth/logout-all/` the host's access log holds."""
    return host.stdout_path.read_text(errors="replace").count('"POST /api/auth/logout-all/"')


async def logout_all_server(hosts: tuple[Worker, ...], before: list[int]) -> Worker:
    """The one host whose access log gained a logout-all line since `before` (daphne writes
    it once it has answered)."""
    deadline = time.monotonic() + 5
    while True:
        served = [h for h, n in zip(hosts, before, strict=True) if logout_all_served(h) > n]
        if served:
            assert len(served) == 1, [h.host for h in served]
            return served[0]
        assert time.monotonic() < deadline, "no host logged the logout-all"
        await asyncio.sleep(0.1)


async def test_sessions_through_nginx_land_on_both_hosts_recorded_with_worker_and_client_ip(
    two_hosts, proxy
):
    alice = user_register(proxy)

    async with AsyncExitStack() as stack:
        landed = await sessions_across_hosts(stack, proxy, alice, two_hosts)
        rows = await asyncio.to_thread(registry_rows, two_hosts[0], [s.session_id for s in landed])
        # Each host's own count agrees with where the registry says its sessions are.
        for host in two_hosts:
            await open_sessions_wait(host, sum(s.host is host for s in landed))

    assert {
        pk: (host_of(row["worker"], two_hosts).host, row["client_ip"]) for pk, row in rows.items()
    } == {s.session_id: (s.host.host, CLIENT) for s in landed}
    assert [row["closed_at"] for row in rows.values()] == [None] * len(landed)


async def test_logout_all_served_by_one_host_closes_the_session_on_the_other_with_4501(
    two_hosts, proxy
):
    alice, bob = user_register(proxy), user_register(proxy)

    async with AsyncExitStack() as stack:
        landed = await sessions_across_hosts(stack, proxy, alice, two_hosts)
        bystander, _ = await session_through(stack, proxy, bob)
        before = [logout_all_served(host) for host in two_hosts]
        with http_client(proxy) as client:
            response = client.post("/api/auth/logout-all/", headers=bearer(alice))
        assert response.status_code == 204, response.text
        closed = [await until_closed(s.ws, within=5) for s in landed]
        await bystander.send(json.dumps({"type": "ping", "id": "still"}))
        assert await frame_json(bystander) == {"type": "pong", "id": "still"}

    served = await logout_all_server(two_hosts, before)
    elsewhere = [s for s in landed if s.host is not served]
    assert elsewhere, "no session of alice on the host that did not serve her logout-all"
    assert [(c.json(), c.rcvd) for c in closed] == [
        ([SESSION_REVOKED], Close(4501, "session revoked"))
    ] * len(landed)
    rows = await registry_closed(two_hosts[0], [s.session_id for s in landed])
    assert {
        pk: (host_of(row["worker"], two_hosts).host, row["close_code"]) for pk, row in rows.items()
    } == {s.session_id: (s.host.host, 4501) for s in landed}


async def test_a_room_message_published_on_either_host_reaches_a_subscriber_on_the_other(
    two_hosts, proxy
):
    alice = user_register(proxy)

    async with AsyncExitStack() as stack:
        landed = await sessions_across_hosts(stack, proxy, alice, two_hosts)
        on_first, on_second = (next(s for s in landed if s.host is host) for host in two_hosts)
        for subscriber, publisher, room in (
            (on_first, on_second, "hosts-2-to-1"),
            (on_second, on_first, "hosts-1-to-2"),
        ):
            await subscribe(subscriber.ws, room)
            data = {"published_on": publisher.host.host}
            await publisher.ws.send(json.dumps({"type": "publish", "channel": room, "data": data}))
            assert await frame_json(publisher.ws) == {"type": "published", "channel": room}
            assert without_ts(await frame_json(subscriber.ws)) == {
                "type": "message",
                "channel": room,
                "data": data,
                "from": who(alice),
            }
