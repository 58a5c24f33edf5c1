"""The session registry over two real daphne workers sharing Redis and one database: admin and
REST disconnects across workers, "online" after SIGKILL and SIGTERM, the per-user limit."""

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.stack import ROOT, Worker
from tests.system.wsclient import frame_json, session_open, until_closed, ws_connect

SESSION_REVOKED = {"type": "error", "code": "session_revoked", "message": "Session revoked"}
TOO_MANY_SESSIONS = {
    "type": "error",
    "code": "too_many_sessions",
    "message": "Too many open sessions for this user; close one first",
}
SESSION_FIELDS = {"id", "user", "client_ip", "user_agent", "worker", "connected_at"}
SESSIONS_CHANGELIST = "/admin/realtime/websocketsession/"
USERS_CHANGELIST = "/admin/accounts/user/"
# Every test registers its own users, so the limit of 2 sessions per user matters only to the
# test of that limit; a SIGKILLed worker's heartbeat expires after 3 s instead of 30.
CLUSTER_ENV = {"WS_PRESENCE_TTL": "3", "WS_MAX_SESSIONS_PER_USER": "2"}


@pytest.fixture(scope="module")
def two_workers(start_module_worker, collected_static) -> tuple[Worker, Worker]:
    # The admin renders with DEBUG off from collected static files; its cookies travel over
    # plain HTTP here, so they must not be marked Secure (a cookie jar would keep them back).
    env = {**CLUSTER_ENV, "DJANGO_STATIC_ROOT": str(collected_static), "DJANGO_SECURE_COOKIES": "0"}
    return start_module_worker(**env), start_module_worker(**env)


@pytest.fixture(scope="module")
def staff(two_workers) -> dict:
    return staff_create(two_workers[0], "sessions-staff")


# -- helpers --------------------------------------------------------------------------------


def manage(worker: Worker, *args: str, **env: str) -> str:
    """Run `manage.py` with the worker's settings (and `env`); its standard output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**worker.env, **env},
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return done.stdout


def staff_create(worker: Worker, username: str) -> dict:
    """A superuser made the operator's way (`createsuperuser`), logged in over REST."""
    manage(
        worker,
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_USERNAME=username,
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        DJANGO_SUPERUSER_EMAIL=f"{username}@example.com",
    )
    with http_client(worker) as client:
        tokens = client.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"username": username, **tokens.json()}


def registry_rows(worker: Worker, session_ids: Iterable[str]) -> dict[str, dict]:
    """The registry rows of `session_ids` by id: worker, client_ip, closed_at, close_code."""
    code = (
        "import json; from realtime.models import WebSocketSession; "
        f"rows = WebSocketSession.objects.filter(pk__in={sorted(session_ids)!r})"
        ".values('id', 'worker', 'client_ip', 'closed_at', 'close_code'); "
        "print(json.dumps(list(rows), default=str))"
    )
    rows = json.loads(manage(worker, "shell", "-c", code).splitlines()[-1])
    return {row.pop("id"): row for row in rows}


async def registry_closed(
    worker: Worker, session_ids: list[str], *, within: float = 10
) -> dict[str, dict]:
    """The rows of `session_ids` once each is recorded closed (the worker records a close
    after its close handshake, so just after the client saw it)."""
    deadline = time.monotonic() + within
    while True:
        rows = await asyncio.to_thread(registry_rows, worker, session_ids)
        if len(rows) == len(session_ids) and all(row["closed_at"] for row in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"not recorded closed within {within} s: {rows}"
        await asyncio.sleep(0.2)


def api(worker: Worker) -> httpx.AsyncClient:
    """An async HTTP client for `worker`, never through a proxy from the environment."""
    return httpx.AsyncClient(base_url=worker.http, timeout=10, trust_env=False)


def bearer(user: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}"}


def who(user: dict) -> dict:
    return {"id": user["id"], "username": user["username"]}


async def sessions_list(worker: Worker, user: dict, *, everyone: bool = False) -> list[dict]:
    """GET /api/realtime/sessions/ as `user` (`?all=1` with `everyone`)."""
    async with api(worker) as client:
        listed = await client.get(
            "/api/realtime/sessions/", params={"all": "1"} if everyone else {}, headers=bearer(user)
        )
    assert listed.status_code == 200, listed.text
    return listed.json()


def ids(sessions: list[dict]) -> list[str]:
    return [session["id"] for session in sessions]


async def online_wait(worker: Worker, user: dict, expected: list[str]) -> None:
    """Wait (at most 5 s) until the user's online sessions are exactly `expected`."""
    deadline = time.monotonic() + 5
    while (now := ids(await sessions_list(worker, user))) != expected:
        assert time.monotonic() < deadline, f"online {now}, expected {expected}"
        await asyncio.sleep(0.1)


def csrf_token(page: str) -> str:
    """The CSRF token of the form on an admin page."""
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def admin_login(client: httpx.AsyncClient, user: dict) -> None:
    """Log in through the admin's login form, as a browser does."""
    form = await client.get("/admin/login/")
    assert form.status_code == 200
    done = await client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": csrf_token(form.text),
            "username": user["username"],
            "password": PASSWORD,
            "next": "/admin/",
        },
    )
    assert (done.status_code, done.headers.get("location")) == (302, "/admin/"), done.text[:300]


async def admin_action(
    client: httpx.AsyncClient, changelist: str, action: str, selected: list[str]
) -> httpx.Response:
    """Run a changelist action on the selected rows (the page's own form, fresh CSRF token)."""
    page = await client.get(changelist)
    assert page.status_code == 200
    for pk in selected:
        assert f'name="_selected_action" value="{pk}"' in page.text, f"{pk} not listed"
    done = await client.post(
        changelist,
        data={
            "csrfmiddlewaretoken": csrf_token(page.text),
            "action": action,
            "_selected_action": selected,
            "select_across": "0",
            "index": "0",
        },
    )
    assert (done.status_code, done.headers.get("location")) == (302, changelist), done.text[:300]
    return done


class StalledClient:
    """A session client that reads nothing once welcomed, so it never answers a close:
    websockets' sans-I/O protocol over a blocking socket, driven by hand."""

    def __init__(self, worker: Worker, token: str) -> None:
        self.protocol = ClientProtocol(parse_uri(f"{worker.ws}/ws/session/?token={token}"))
        self.sock = socket.create_connection(("127.0.0.1", worker.port), timeout=10)
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.welcome: dict | None = None
        while self.welcome is None:
            data = self.sock.recv(65536)
            assert data, "closed before the welcome"
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    self.welcome = json.loads(event.data)
        assert self.welcome["type"] == "welcome", self.welcome

    def close_read(self) -> Close | None:
        """Read, never answering, until the server drops the connection: the close received.
        Blocking (at most 10 s per read): run it in a thread."""
        try:
            while data := self.sock.recv(65536):
                self.protocol.receive_data(data)
        except ConnectionResetError:
            pass  # dropped once its close handshake timed out; what came before was read
        finally:
            self.sock.close()
        return self.protocol.close_rcvd


def assert_revoked(closed) -> None:
    assert closed.json() == [SESSION_REVOKED]
    assert (closed.code, closed.reason) == (4501, "session revoked")


# -- disconnects from the admin and REST -----------------------------------------------------


async def test_an_admin_disconnect_through_worker_2_closes_a_session_on_worker_1_4501(
    two_workers, staff
):
    worker1, worker2 = two_workers
    alice = user_register(worker1)
    async with session_open(worker1, alice["access"]) as (ws, welcome), api(worker2) as admin:
        session_id = welcome["session_id"]
        await admin_login(admin, staff)
        await admin_action(admin, SESSIONS_CHANGELIST, "disconnect_selected", [session_id])
        posted = time.monotonic()
        closed = await until_closed(ws, within=5)
        closed_after = time.monotonic() - posted
        after = await admin.get(SESSIONS_CHANGELIST)

    assert_revoked(closed)
    assert closed_after < 1, closed_after
    assert "Disconnected 1 session(s) (close 4501)." in after.text
    rows = await registry_closed(worker1, [session_id])
    assert rows[session_id]["close_code"] == 4501


async def test_the_user_admin_action_disconnects_every_session_of_a_user_on_both_workers(
    two_workers, staff
):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    async with (
        session_open(worker1, alice["access"]) as (alice_1, _),
        session_open(worker2, alice["access"]) as (alice_2, _),
        session_open(worker1, bob["access"]) as (bob_1, _),
        api(worker2) as admin,
    ):
        await admin_login(admin, staff)
        # Searched for: the shared database may hold more users than one changelist page.
        found = f"{USERS_CHANGELIST}?q={alice['username']}"
        await admin_action(admin, found, "disconnect_sessions", [str(alice["id"])])
        for ws in (alice_1, alice_2):
            assert_revoked(await until_closed(ws, within=5))
        # Her tokens stay valid (she may reconnect); bob was not touched.
        async with session_open(worker2, alice["access"]):
            pass
        await bob_1.send(json.dumps({"type": "ping", "id": "still"}))
        assert await frame_json(bob_1) == {"type": "pong", "id": "still"}


async def test_rest_lists_the_callers_sessions_on_both_workers_and_deletes_one_across_workers(
    two_workers,
):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    async with (
        session_open(worker1, alice["access"]) as (alice_1, welcome_1),
        session_open(worker2, alice["access"]) as (alice_2, welcome_2),
        session_open(worker2, bob["access"]) as (_, welcome_bob),
    ):
        on_1, on_2 = welcome_1["session_id"], welcome_2["session_id"]
        listed = await sessions_list(worker1, alice)
        assert ids(listed) == [on_1, on_2]  # oldest first
        assert [set(session) for session in listed] == [SESSION_FIELDS, SESSION_FIELDS]
        assert [(s["user"], s["client_ip"]) for s in listed] == [(who(alice), "127.0.0.1")] * 2
        assert listed[0]["worker"] != listed[1]["worker"]
        assert ids(await sessions_list(worker2, bob)) == [welcome_bob["session_id"]]

        async with api(worker2) as client:
            # Bob cannot see alice's session, so for him it does not exist.
            refused = await client.delete(f"/api/realtime/sessions/{on_1}/", headers=bearer(bob))
            deleted = await client.delete(f"/api/realtime/sessions/{on_1}/", headers=bearer(alice))
        posted = time.monotonic()
        assert refused.status_code == 404, refused.text
        assert refused.json() == {"detail": "No such online session.", "code": "not_found"}
        assert (deleted.status_code, deleted.content) == (204, b"")
        closed = await until_closed(alice_1, within=5)
        closed_after = time.monotonic() - posted

        assert_revoked(closed)
        assert closed_after < 1, closed_after
        await online_wait(worker1, alice, [on_2])
        await alice_2.send(json.dumps({"type": "ping", "id": "left"}))
        assert await frame_json(alice_2) == {"type": "pong", "id": "left"}
    rows = await registry_closed(worker1, [on_1])
    assert rows[on_1]["close_code"] == 4501


# -- which sessions are online ----------------------------------------------------------------


async def test_a_worker_killed_with_sigkill_drops_out_of_online_within_the_heartbeat_ttl(
    two_workers, staff, start_worker
):
    worker1, _ = two_workers
    doomed = start_worker(WS_PRESENCE_TTL="3")
    alice = user_register(worker1)
    async with (
        session_open(worker1, alice["access"]) as (_, kept),
        session_open(doomed, alice["access"]) as (victim, lost),
    ):
        before = ids(await sessions_list(worker1, staff, everyone=True))
        assert {kept["session_id"], lost["session_id"]} <= set(before)

        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        while True:
            now = ids(await sessions_list(worker1, staff, everyone=True))
            if lost["session_id"] not in now:
                break
            assert time.monotonic() - killed < 10, "the killed worker's session is still online"
            await asyncio.sleep(0.25)
        assert kept["session_id"] in now
        closed = await until_closed(victim, within=5)
    assert (closed.code, closed.rcvd) == (1006, None)  # dropped: no close frame


async def test_sigterm_closes_the_workers_sockets_1001_and_records_its_sessions_closed(
    two_workers, staff, start_worker
):
    worker1, _ = two_workers
    leaving = start_worker()
    alice, bob = user_register(worker1), user_register(worker1)
    async with (
        session_open(leaving, alice["access"]) as (alice_ws, alice_welcome),
        session_open(leaving, bob["access"]) as (bob_ws, bob_welcome),
        session_open(worker1, bob["access"]) as (_, kept),
    ):
        gone = [alice_welcome["session_id"], bob_welcome["session_id"]]
        before = await sessions_list(worker1, staff, everyone=True)
        assert set(gone + [kept["session_id"]]) <= set(ids(before))
        (leaving_id,) = {s["worker"] for s in before if s["id"] in gone}

        # In a thread: the clients answer the close handshakes during the shutdown.
        await asyncio.to_thread(leaving.stop, signal.SIGTERM)
        for ws in (alice_ws, bob_ws):
            closed = await until_closed(ws, within=5)
            assert (closed.frames, closed.code, closed.reason) == ([], 1001, "server going away")
        after = await sessions_list(worker1, staff, everyone=True)

    assert [s for s in after if s["worker"] == leaving_id] == []
    assert kept["session_id"] in ids(after)
    rows = await asyncio.to_thread(registry_rows, worker1, gone)
    assert {pk: (row["worker"], row["close_code"]) for pk, row in rows.items()} == {
        pk: (leaving_id, 1001) for pk in gone
    }
    assert all(row["closed_at"] for row in rows.values()), rows
    assert "shutting down: closed 2 WebSocket(s) with 1001" in leaving.log_text()


async def test_sigterm_records_1001_for_a_client_that_never_answers_the_close(start_worker):
    leaving = start_worker()
    alice = user_register(leaving)
    stalled = StalledClient(leaving, alice["access"])
    session_id = stalled.welcome["session_id"]

    closing = asyncio.create_task(asyncio.to_thread(stalled.close_read))
    await asyncio.to_thread(leaving.stop, signal.SIGTERM)
    assert await closing == Close(1001, "server going away")

    # The worker sent 1001 and dropped the connection when the handshake timed out: the
    # session still ended by the server's 1001, not by an abnormal closure (1006).
    rows = await asyncio.to_thread(registry_rows, leaving, [session_id])
    assert rows[session_id]["close_code"] == 1001, rows
    assert rows[session_id]["closed_at"], rows


# -- the per-user limit -----------------------------------------------------------------------


async def test_a_third_session_is_refused_4502_on_either_worker_until_one_closes(two_workers):
    worker1, worker2 = two_workers
    alice = user_register(worker1)
    async with (
        session_open(worker1, alice["access"]) as (first, first_welcome),
        session_open(worker2, alice["access"]) as (_, second_welcome),
    ):
        for worker in (worker1, worker2):
            async with ws_connect(worker, f"/ws/session/?token={alice['access']}") as ws:
                refused = await until_closed(ws)
            assert refused.json() == [TOO_MANY_SESSIONS]
            assert (refused.code, refused.reason) == (4502, "too many sessions")
        second = second_welcome["session_id"]
        await online_wait(worker1, alice, [first_welcome["session_id"], second])

        await first.close()
        await online_wait(worker2, alice, [second])
        async with session_open(worker1, alice["access"]) as (_, third):
            await online_wait(worker2, alice, [second, third["session_id"]])
