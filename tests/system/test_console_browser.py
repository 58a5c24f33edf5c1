"""The browser console (`/`) in a real browser: Debian's Chromium driven by Playwright, against
real daphne workers with DEBUG off and collected static files.

Without /usr/bin/chromium these tests skip with a loud reason (`make test` installs it as
root); under CI (CI set) they fail instead: CI must never pass without running them.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.stack import ROOT, DaphneWorker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
WAIT_MS = 10_000  # every wait on the page is bounded
# A restart: SIGTERM, a new daphne on the same port, then the page's backoff (full jitter,
# at most 0.5, 1, 2, 4, 8 s) until its ticket request and handshake succeed.
RECONNECT_WAIT_MS = 40_000
STAFF_GRANT = (
    "from accounts.models import User; User.objects.filter(username=%r).update(is_staff=True)"
)


def browser_problem() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f"the playwright package is missing ({e}); run make test"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    problem = browser_problem()
    if problem:
        message = f"BROWSER TESTS NOT RUN: {problem}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{message}; CI must run them", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def console_worker(start_module_worker, collected_static) -> DaphneWorker:
    """A worker (DEBUG off, on Redis) serving the collected static files, for the module."""
    return start_module_worker(DJANGO_STATIC_ROOT=str(collected_static))


@pytest.fixture
def new_page(browser) -> Iterator:
    """`new_page()`: a page in a context of its own (own memory, as a separate browser)."""
    contexts = []

    def new():
        context = browser.new_context()
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield new
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def console_login(page, worker: DaphneWorker, username: str) -> None:
    """Open the console and log in through its form."""
    from playwright.sync_api import expect

    page.goto(f"{worker.http}/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user-name")).to_have_text(username)


def session_connect(page) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("session-connect").click()
    expect(page.get_by_test_id("session-status")).to_have_text("connected")


def log_entries(page, direction: str, text: str, endpoint: str = "session"):
    selector = f'[data-testid="log-entry"][data-direction="{direction}"]'
    return page.locator(f'{selector}[data-endpoint="{endpoint}"]', has_text=text)


@contextmanager
def room_client(worker: DaphneWorker, access: str, room: str) -> Iterator[ClientConnection]:
    """A plain Python client, as a script would be: connected and subscribed to `room`."""
    with connect(f"{worker.ws}/ws/session/?token={access}", proxy=None, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "channel": room}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed", "channel": room}
        yield ws


def test_a_person_logs_in_echoes_and_is_told_the_session_was_revoked(new_page, console_worker):
    from playwright.sync_api import expect

    user = user_register(console_worker)
    page = new_page()
    console_login(page, console_worker, user["username"])
    expect(page.get_by_test_id("user-email")).to_have_text(f"{user['username']}@example.com")
    expect(page.get_by_test_id("admin-link")).to_be_hidden()

    session_connect(page)
    expect(log_entries(page, "in", '"type":"welcome"')).to_have_count(1)
    page.get_by_test_id("echo-input").fill("hello from chromium")
    page.get_by_test_id("echo-send").click()
    expect(
        log_entries(page, "in", '{"type":"echo","data":"hello from chromium","id":1}')
    ).to_be_visible()
    page.get_by_test_id("ping-send").click()
    expect(log_entries(page, "in", '{"type":"pong","id":2}')).to_be_visible()

    page.get_by_test_id("echo-connect").click()
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")
    page.get_by_test_id("echo-text").fill("plain text")
    page.get_by_test_id("echo-text-send").click()
    expect(log_entries(page, "in", "Server received: plain text", endpoint="echo")).to_be_visible()

    with http_client(console_worker) as client:
        revoked = client.post(
            "/api/auth/logout-all/", headers={"Authorization": f"Bearer {user['access']}"}
        )
    assert revoked.status_code == 204

    expect(page.get_by_test_id("session-stop-reason")).to_have_text("session revoked")
    expect(page.get_by_test_id("session-stop-code")).to_have_text("4501")
    expect(page.get_by_test_id("session-stop-meaning")).to_have_text(
        "your tokens were revoked or an operator disconnected this session — log in again"
    )
    expect(page.get_by_test_id("session-status")).to_have_text(
        "stopped: session revoked — your tokens were revoked or an operator disconnected this "
        "session — log in again"
    )
    closed = 'closed 4501: session revoked (reason "session revoked")'
    expect(log_entries(page, "event", closed)).to_have_count(1)
    screenshot(page, "session-revoked")
    page.wait_for_timeout(2000)  # long enough for a first reconnect attempt, had there been one
    expect(log_entries(page, "event", "connecting to")).to_have_count(1)
    expect(log_entries(page, "event", "reconnecting")).to_have_count(0)
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")  # anonymous: untouched
    assert "eyJ" not in page.content()  # no JWT anywhere on the page, the log included


def test_the_admin_link_is_shown_to_staff_only(new_page, console_worker):
    from playwright.sync_api import expect

    staff, member = user_register(console_worker), user_register(console_worker)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STAFF_GRANT % staff["username"]],
        cwd=ROOT,
        env=console_worker.env,
        check=True,
        timeout=60,
    )
    for user, visible in ((staff, True), (member, False)):
        page = new_page()
        console_login(page, console_worker, user["username"])
        link = page.get_by_test_id("admin-link")
        if visible:
            expect(link).to_be_visible()
            expect(link).to_have_attribute("href", "/admin/")
        else:
            expect(link).to_be_hidden()


def test_the_access_token_is_refreshed_before_it_expires(new_page, start_worker, collected_static):
    from playwright.sync_api import expect

    # 6 s tokens: the console refreshes at half their life, ahead of the server's warning.
    worker = start_worker(
        DJANGO_STATIC_ROOT=str(collected_static), JWT_ACCESS_TTL="6", WS_EXPIRY_WARNING="1"
    )
    user = user_register(worker)
    page = new_page()
    console_login(page, worker, user["username"])
    session_connect(page)

    expect(log_entries(page, "out", '{"type":"refresh","token":"[redacted]"')).to_have_count(
        2, timeout=WAIT_MS
    )
    expect(log_entries(page, "in", '"type":"refreshed"')).to_have_count(2)
    page.get_by_test_id("ping-send").click()  # past the first token's expiry: still open
    expect(log_entries(page, "in", '"type":"pong"')).to_have_count(1)
    expect(log_entries(page, "in", '"type":"expiring"')).to_have_count(0)
    expect(log_entries(page, "event", "closed")).to_have_count(0)
    assert "eyJ" not in page.content()


def test_two_pages_and_a_python_client_share_a_room_and_recover_from_a_restart(
    new_page, start_worker, collected_static
):
    from playwright.sync_api import expect

    worker = start_worker(DJANGO_STATIC_ROOT=str(collected_static))  # restarted below
    room = f"room-{uuid.uuid4().hex[:8]}"
    alice, bob, script = (user_register(worker) for _ in range(3))
    pages = {}
    for user in (alice, bob):
        page = pages[user["username"]] = new_page()
        console_login(page, worker, user["username"])
        session_connect(page)
        page.get_by_test_id("room-name").fill(room)
        page.get_by_test_id("room-subscribe").click()
        expect(page.get_by_test_id("room-joined")).to_have_text(room)
    page_a, page_b = pages.values()

    def publish_and_receive(python: ClientConnection, text: str) -> None:
        page_a.get_by_test_id("room-message").fill(text)
        page_a.get_by_test_id("room-publish").click()
        line = f'[{room}] {alice["username"]}: "{text}"'
        for page in pages.values():
            expect(page.get_by_test_id("room-message-entry").filter(has_text=line)).to_have_count(1)
        message = json.loads(python.recv(timeout=10))
        assert (message["type"], message["data"]) == ("message", text)

    with room_client(worker, script["access"], room) as python:
        publish_and_receive(python, "before the restart")
        worker.stop()  # SIGTERM: every socket closed with 1001
    worker.start()  # the same port

    for page in pages.values():
        # At least one 1001 and one more welcome: an attempt may have reached the old worker
        # while it drained (it answers HTTP for up to 2 s), and been closed 1001 again.
        expect(log_entries(page, "event", "closed 1001: server going away").first).to_be_visible()
        welcomes = log_entries(page, "in", '"type":"welcome"')
        expect(welcomes.nth(1)).to_be_attached(timeout=RECONNECT_WAIT_MS)
        expect(page.get_by_test_id("session-status")).to_have_text("connected")
        # The room is rejoined after every welcome.
        expect(log_entries(page, "in", '"type":"subscribed"')).to_have_count(welcomes.count())
    with room_client(worker, script["access"], room) as python:  # a script reconnects
        publish_and_receive(python, "after the restart")
        page_b.get_by_test_id("room-presence").click()
        presence = page_b.get_by_test_id("presence-users")
        for user in (alice, bob, script):
            expect(presence).to_contain_text(user["username"])
    screenshot(page_a, "room-after-restart-a")
    screenshot(page_b, "room-after-restart-b")


def test_close_code_policy_and_backoff_run_as_documented_in_the_browser(new_page, console_worker):
    page = new_page()
    page.goto(f"{console_worker.http}/")
    found = page.evaluate(
        """async () => {
          const { closeAction } = await import("/static/console/closecodes.js");
          const { backoffDelay } = await import("/static/console/backoff.js");
          const actions = {};
          for (const code of [1000, 1001, 1003, 1006, 1008, 1009, 1011, 1013, 4000, 4001, 4008,
                              4009, 4499, 4500, 4501, 4502, 4999]) {
            actions[code] = closeAction(code);
          }
          const delays = [];
          for (let attempt = 0; attempt < 10; attempt++) {
            const samples = Array.from({ length: 400 }, () => backoffDelay(attempt));
            delays.push([Math.min(...samples), Math.max(...samples)]);
          }
          return { actions, delays };
        }"""
    )
    assert found["actions"] == {
        "1000": "stop",
        "1001": "reconnect",
        "1003": "stop",
        "1006": "reconnect",
        "1008": "stop",
        "1009": "stop",
        "1011": "reconnect",
        "1013": "reconnect",
        "4000": "reconnect",
        "4001": "refresh-then-reconnect",
        "4008": "reconnect",
        "4009": "reconnect",
        "4499": "reconnect",
        "4500": "stop",
        "4501": "stop",
        "4502": "stop",
        "4999": "stop",
    }
    for attempt, (low, high) in enumerate(found["delays"]):
        ceiling = min(30_000, 500 * 2**attempt)  # full jitter: uniform in [0, ceiling)
        assert 0 <= low < ceiling * 0.1, (attempt, low)
        assert ceiling * 0.9 < high < ceiling, (attempt, high)
