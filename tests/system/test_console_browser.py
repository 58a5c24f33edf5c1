"""The browser console (`/`) in a real browser: Debian's Chromium driven by Playwright, against
real daphne workers with DEBUG off and collected static files.

Without /usr/bin/chromium these tests skip with a loud reason (`make test` installs it as
root); under CI (CI set) they fail instead: CI must never pass without running them.
"""

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from deploy.servers import SUPPORTED
from switchboard_client.recovery import Position, message_step, subscribed_step
from tests.system.conftest import PASSWORD, user_register
from tests.system.stack import ROOT, Worker
from tests.system.test_client_system import HISTORY_NAMESPACES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
WAIT_MS = 10_000  # every wait on the page is bounded
# A restart: SIGTERM, a new worker on the same port, then the page's backoff (full jitter,
# at most 0.5, 1, 2, 4, 8 s) until its ticket request and handshake succeed.
RECONNECT_WAIT_MS = 40_000
# What the page logs when a SIGTERMed worker closes its socket, on every server.
RESTART_CLOSE = "closed 1001: server going away"
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
def console_worker(start_module_worker, collected_static) -> Worker:
    """A worker (DEBUG off, on Redis) serving the collected static files, for the module."""
    return start_module_worker(DJANGO_STATIC_ROOT=str(collected_static))


@pytest.fixture
def new_page(browser) -> Iterator:
    """`new_page()`: a page in a context of its own (own memory, as a separate browser). Any
    uncaught script error on a page fails the test (a bad state move throws)."""
    contexts, errors = [], []

    def new():
        context = browser.new_context()
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield new
    for context in contexts:
        context.close()
    assert errors == []


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def console_open(page, worker: Worker) -> None:
    from playwright.sync_api import expect

    page.goto(f"{worker.http}/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def console_login(page, worker: Worker, username: str) -> None:
    """Open the console and log in through its form."""
    from playwright.sync_api import expect

    console_open(page, worker)
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user-name")).to_have_text(username)


def session_connect(page) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("session-connect").click()
    expect(page.get_by_test_id("session-status")).to_have_text("connected")


def room_join(page, room: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("room-name").fill(room)
    page.get_by_test_id("room-subscribe").click()
    expect(page.get_by_test_id("room-joined")).to_contain_text(room)


def page_join(page, worker: Worker, username: str, room: str) -> None:
    """Log in on `worker`, connect, and join `room`."""
    console_login(page, worker, username)
    session_connect(page)
    room_join(page, room)


def page_reconnected(page, *, rooms: int = 1) -> None:
    """Wait until the page is back after its worker's restart: the close seen, another
    welcome, connected, and its `rooms` rejoined after every welcome."""
    from playwright.sync_api import expect

    expect(log_entries(page, "event", RESTART_CLOSE).first).to_be_visible()
    welcomes = log_entries(page, "in", '"type":"welcome"')
    expect(welcomes.nth(1)).to_be_attached(timeout=RECONNECT_WAIT_MS)
    expect(page.get_by_test_id("session-status")).to_have_text("connected")
    subscribed = log_entries(page, "in", '"type":"subscribed"')
    expect(subscribed).to_have_count(welcomes.count() * rooms)


def log_entries(page, direction: str, text: str, endpoint: str = "session"):
    selector = f'[data-testid="log-entry"][data-direction="{direction}"]'
    return page.locator(f'{selector}[data-endpoint="{endpoint}"]', has_text=text)


def enabled_buttons(page) -> list[str]:
    """The data-testid of every button that can be clicked now."""
    return page.evaluate(
        """() => [...document.querySelectorAll("button[data-testid]")]
              .filter((button) => !button.disabled).map((button) => button.dataset.testid)
              .sort()"""
    )


def states_record(page) -> None:
    """From now on, keep every value body[data-session] takes, in order (`states_seen`)."""
    page.evaluate(
        """() => {
          window.seenStates = [document.body.dataset.session];
          new MutationObserver(() => {
            const state = document.body.dataset.session;
            if (state !== window.seenStates.at(-1)) window.seenStates.push(state);
          }).observe(document.body, { attributes: true, attributeFilter: ["data-session"] });
        }"""
    )


def states_seen(page) -> list[str]:
    return page.evaluate("() => window.seenStates")


def css(page, testid: str, prop: str) -> str:
    return page.get_by_test_id(testid).evaluate(f"(e) => getComputedStyle(e)[{prop!r}]")


@contextmanager
def room_client(worker: Worker, access: str, room: str) -> Iterator[ClientConnection]:
    """A plain Python client, as a script would be: connected and subscribed to `room`."""
    with connect(f"{worker.ws}/ws/session/?token={access}", proxy=None, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "channel": room}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed", "channel": room}
        yield ws


def room_publish(worker: Worker, access: str, room: str, texts: list[str]) -> list[int | None]:
    """Publish each of `texts` to `room` from a script on `worker`, subscribed to it (a
    namespace's rooms take their subscribers' messages); the offsets it was given."""
    offsets = []
    with connect(f"{worker.ws}/ws/session/?token={access}", proxy=None, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "channel": room}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        for n, text in enumerate(texts):
            ws.send(json.dumps({"type": "publish", "channel": room, "data": text, "id": n}))
            while (reply := json.loads(ws.recv(timeout=10))).get("id") != n:
                pass  # the room's own messages, if the script is in it
            assert reply["type"] == "published", reply
            offsets.append(reply.get("offset"))
    return offsets


LOGGED_OUT_BUTTONS = ["echo-connect", "log-clear", "login-submit", "register-submit"]
DISCONNECTED_BUTTONS = ["echo-connect", "log-clear", "logout", "logout-all", "session-connect"]
OPEN_BUTTONS = [
    "echo-connect",
    "echo-send",
    "log-clear",
    "logout",
    "logout-all",
    "ping-send",
    "room-presence",
    "room-publish",
    "room-subscribe",
    "room-unsubscribe",
    "session-disconnect",
]
NEUTRAL = "rgb(90, 98, 112)"  # .status: the colour of a state that is neither an error nor open
ERROR_RED = "rgb(179, 38, 30)"
REVOKED = (
    "logged out after close 4501 (session revoked): your tokens were revoked or an operator "
    "disconnected this session — log in again"
)


def test_a_fresh_page_says_not_connected_in_neutral_words_and_enables_only_what_works(
    new_page, console_worker
):
    from playwright.sync_api import expect

    page = new_page()
    console_open(page, console_worker)
    for testid, state in (("session-status", "logged-out"), ("echo-status", "idle")):
        status = page.get_by_test_id(testid)
        expect(status).to_have_text("not connected")
        expect(status).to_have_attribute("data-state", state)
        assert css(page, testid, "color") == NEUTRAL
    assert enabled_buttons(page) == LOGGED_OUT_BUTTONS
    expect(page.get_by_test_id("session-connect")).to_be_disabled()
    for notice in ("account-message", "session-notice", "room-notice", "echo-notice"):
        expect(page.get_by_test_id(notice)).to_be_hidden()  # empty: nothing to say yet
    # "Clear" is a small button beside the heading, not heading-sized text.
    assert css(page, "log-clear", "fontSize") == "13.6px"  # 0.85rem
    heading = page.locator("#log-title").evaluate("(e) => getComputedStyle(e).fontSize")
    assert float(heading.removesuffix("px")) > 20
    screenshot(page, "fresh-page")


def test_the_buttons_follow_the_session_state_machine(new_page, console_worker):
    from playwright.sync_api import expect

    user = user_register(console_worker)
    page = new_page()
    console_login(page, console_worker, user["username"])
    status = page.get_by_test_id("session-status")
    expect(status).to_have_text("not connected")
    expect(status).to_have_attribute("data-state", "disconnected")
    assert enabled_buttons(page) == DISCONNECTED_BUTTONS

    states_record(page)
    session_connect(page)
    expect(status).to_have_attribute("data-state", "open")
    assert enabled_buttons(page) == OPEN_BUTTONS
    page.get_by_test_id("session-disconnect").click()
    expect(status).to_have_text("not connected")  # not a red "closed"
    expect(status).to_have_attribute("data-state", "disconnected")
    assert css(page, "session-status", "color") == NEUTRAL
    expect(page.get_by_test_id("session-notice")).to_be_hidden()
    assert states_seen(page) == ["disconnected", "connecting", "open", "closing", "disconnected"]
    assert enabled_buttons(page) == DISCONNECTED_BUTTONS
    closes = log_entries(page, "event", "closed ")
    expect(closes.locator("code")).to_have_text(["closed 1000: normal closure"])

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("account-message")).to_have_text("logged out")
    expect(page.get_by_test_id("account-message")).to_have_attribute("data-kind", "info")
    expect(status).to_have_attribute("data-state", "logged-out")
    assert enabled_buttons(page) == LOGGED_OUT_BUTTONS


def test_a_revocation_in_another_tab_logs_the_page_out_and_says_so_once(new_page, console_worker):
    from playwright.sync_api import expect

    user = user_register(console_worker)
    room = f"room-{uuid.uuid4().hex[:8]}"
    page = new_page()
    console_login(page, console_worker, user["username"])
    expect(page.get_by_test_id("user-email")).to_have_text(f"{user['username']}@example.com")
    expect(page.get_by_test_id("admin-link")).to_be_hidden()
    session_connect(page)
    page.get_by_test_id("room-name").fill(room)
    page.get_by_test_id("room-subscribe").click()
    expect(page.get_by_test_id("room-joined")).to_have_text(room)
    page.get_by_test_id("room-presence").click()
    expect(page.get_by_test_id("presence-users")).to_have_text(f"{room}: {user['username']}")
    page.get_by_test_id("room-message").fill("before the revocation")
    page.get_by_test_id("room-publish").click()
    expect(page.get_by_test_id("room-message-entry")).to_have_count(1)
    page.get_by_test_id("echo-connect").click()
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")

    other_tab = new_page()  # the same person, logged in elsewhere: "Log out everywhere"
    console_login(other_tab, console_worker, user["username"])
    other_tab.get_by_test_id("logout-all").click()
    expect(other_tab.get_by_test_id("account-message")).to_have_text("logged out everywhere")
    expect(other_tab.get_by_test_id("logged-out")).to_be_visible()

    message = page.get_by_test_id("account-message")
    expect(message).to_have_text(REVOKED)
    expect(message).to_have_attribute("data-kind", "error")
    expect(page.get_by_test_id("logged-in")).to_be_hidden()
    expect(page.get_by_test_id("logged-out")).to_be_visible()
    expect(page.get_by_test_id("user-name")).to_have_text("")
    expect(page.get_by_test_id("room-joined")).to_have_text("none")
    expect(page.get_by_test_id("presence-users")).to_have_text("—")
    expect(page.get_by_test_id("room-message-entry")).to_have_count(0)
    expect(page.get_by_test_id("session-id")).to_have_text("—")
    expect(page.get_by_test_id("session-status")).to_have_text("not connected")
    expect(page.get_by_test_id("session-status")).to_have_attribute("data-state", "logged-out")
    expect(page.get_by_test_id("session-notice")).to_be_hidden()
    expect(page.get_by_test_id("room-notice")).to_be_hidden()
    echo_open = {"echo-disconnect", "echo-text-send"}  # the anonymous echo stays open
    assert enabled_buttons(page) == sorted({*LOGGED_OUT_BUTTONS, *echo_open} - {"echo-connect"})
    # Said once, in one place: the frame log records the close, and nothing else repeats it.
    text = page.locator("body").inner_text()
    assert "Logged in as" not in text
    sections = "\n".join(page.locator("main > section:not(#frames)").all_inner_texts())
    assert sections.count(REVOKED) == 1, sections
    assert "revoked" not in sections.replace(REVOKED, ""), sections
    closed = 'closed 4501: session revoked (reason "session revoked")'
    expect(log_entries(page, "event", closed)).to_have_count(1)
    screenshot(page, "session-revoked")
    page.wait_for_timeout(2000)  # long enough for a first reconnect attempt, had there been one
    expect(log_entries(page, "event", "connecting to")).to_have_count(1)
    expect(log_entries(page, "event", "reconnecting")).to_have_count(0)
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")  # anonymous: untouched
    assert "eyJ" not in page.content()  # no JWT anywhere on the page, the log included

    # The tokens are gone for real: logging in again is the way back, and it works.
    console_login(page, console_worker, user["username"])
    expect(message).to_be_hidden()
    session_connect(page)


def test_each_section_shows_its_replies_and_errors_and_a_success_clears_the_error(
    new_page, console_worker
):
    from playwright.sync_api import expect

    user = user_register(console_worker)
    page = new_page()
    console_open(page, console_worker)
    account = page.get_by_test_id("account-message")
    page.get_by_test_id("login-username").fill(user["username"])
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    expect(account).to_have_text(
        "login refused: No active account found with the given credentials"
    )
    expect(account).to_have_attribute("data-kind", "error")
    assert css(page, "account-message", "color") == ERROR_RED
    assert enabled_buttons(page) == LOGGED_OUT_BUTTONS  # still logged out
    console_login(page, console_worker, user["username"])
    expect(account).to_have_text("")
    expect(account).to_be_hidden()

    session_connect(page)
    page.get_by_test_id("echo-input").fill("hello from chromium")
    page.get_by_test_id("echo-send").click()
    reply = page.get_by_test_id("session-reply")
    expect(reply).to_have_text('echo "hello from chromium"')
    expect(
        log_entries(page, "in", '{"type":"echo","data":"hello from chromium","id":1}')
    ).to_be_visible()
    page.get_by_test_id("ping-send").click()
    expect(reply).to_have_text(re.compile(r"^pong after \d+ ms$"))

    rooms = page.get_by_test_id("room-notice")
    page.get_by_test_id("room-name").fill("staff.only")
    page.get_by_test_id("room-subscribe").click()
    expect(rooms).to_have_text("forbidden: Not allowed on this channel")
    expect(rooms).to_have_attribute("data-kind", "error")
    expect(page.get_by_test_id("session-notice")).to_be_hidden()  # in its own section only
    screenshot(page, "room-error")
    page.get_by_test_id("room-name").fill("lobby")
    page.get_by_test_id("room-subscribe").click()
    expect(rooms).to_have_text("joined lobby")
    expect(rooms).to_have_attribute("data-kind", "ok")
    expect(page.get_by_test_id("room-joined")).to_have_text("lobby")

    page.get_by_test_id("echo-connect").click()
    expect(page.get_by_test_id("echo-status")).to_have_text("connected")
    page.get_by_test_id("echo-text").fill("plain text")
    page.get_by_test_id("echo-text-send").click()
    expect(page.get_by_test_id("echo-reply")).to_have_text(["Server received: plain text"])
    expect(log_entries(page, "in", "Server received: plain text", endpoint="echo")).to_be_visible()
    page.get_by_test_id("echo-disconnect").click()
    expect(page.get_by_test_id("echo-status")).to_have_text("not connected")
    assert css(page, "echo-status", "color") == NEUTRAL
    expect(page.get_by_test_id("echo-notice")).to_be_hidden()
    screenshot(page, "replies")


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


@pytest.mark.parametrize("server", SUPPORTED)
def test_two_pages_and_a_python_client_share_a_room_and_recover_from_a_restart(
    new_page, start_worker, collected_static, server
):
    from playwright.sync_api import expect

    # restarted below
    worker = start_worker(server=server, DJANGO_STATIC_ROOT=str(collected_static))
    room = f"room-{uuid.uuid4().hex[:8]}"
    alice, bob, script = (user_register(worker) for _ in range(3))
    pages = {}
    for user in (alice, bob):
        page = pages[user["username"]] = new_page()
        page_join(page, worker, user["username"], room)
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
        page_reconnected(page)
    with room_client(worker, script["access"], room) as python:  # a script reconnects
        publish_and_receive(python, "after the restart")
        page_b.get_by_test_id("room-presence").click()
        presence = page_b.get_by_test_id("presence-users")
        for user in (alice, bob, script):
            expect(presence).to_contain_text(user["username"])
    screenshot(page_a, "room-after-restart-a")
    screenshot(page_b, "room-after-restart-b")


def test_a_page_shows_each_message_published_while_its_worker_restarted_once(
    new_page, start_worker, collected_static
):
    from playwright.sync_api import expect

    worker = start_worker(  # restarted below
        DJANGO_STATIC_ROOT=str(collected_static), REALTIME_NAMESPACES=HISTORY_NAMESPACES
    )
    other = start_worker(REALTIME_NAMESPACES=HISTORY_NAMESPACES)  # up while the first is down
    tag = uuid.uuid4().hex[:8]
    kept, brief = f"chat.room-{tag}", f"brief.room-{tag}"
    texts = ["before", "away 1", "away 2", "after"]  # to `kept`: the middle two while away
    reader, script = user_register(worker), user_register(worker)
    page = new_page()
    page_join(page, worker, reader["username"], kept)
    room_join(page, brief)
    entries = page.get_by_test_id("room-message-entry")
    sender = script["username"]

    assert room_publish(other, script["access"], kept, ["before"]) == [1]
    expect(entries).to_have_text([f'[{kept}] #1 {sender}: "before"'])
    worker.stop()  # SIGTERM: the page's socket closed with 1001
    assert room_publish(other, script["access"], kept, ["away 1", "away 2"]) == [2, 3]
    # Four in a history of two: the first two are gone when the page asks.
    assert room_publish(other, script["access"], brief, ["b1", "b2", "b3", "b4"]) == [1, 2, 3, 4]
    worker.start()  # the same port
    page_reconnected(page, rooms=2)
    assert room_publish(other, script["access"], kept, ["after"]) == [4]
    assert room_publish(other, script["access"], brief, ["b5"]) == [5]

    # Replayed after the rejoin, then live: each once, in order, with its offset.
    expect(entries.filter(has_text=f"[{kept}]")).to_have_text(
        [f'[{kept}] #{n} {sender}: "{text}"' for n, text in enumerate(texts, 1)]
    )
    expect(entries.filter(has_text=f"[{brief}]")).to_have_text([f'[{brief}] #5 {sender}: "b5"'])
    missing = f"some messages may be missing in {brief}"
    expect(page.get_by_test_id("room-missed-entry")).to_have_text([missing])
    said = log_entries(page, "event", "some messages may be missing").locator("code")
    expect(said).to_have_text([missing])
    rejoins = [f'"type":"subscribe","channel":"{kept}","since":{{"offset":1,"epoch":"']
    rejoins.append(f'"type":"subscribe","channel":"{brief}","since":{{"offset":0,"epoch":"')
    for rejoin in rejoins:
        expect(log_entries(page, "out", rejoin)).to_have_count(1)
    screenshot(page, "room-recovered")


# (last position, frame): what the page's recovery.js and the Python client's recovery.py
# must agree on.
RECOVERY_CASES = [
    (None, {"type": "subscribed", "channel": "c", "offset": 4, "epoch": "e1"}),
    (None, {"type": "subscribed", "channel": "c"}),
    (
        {"epoch": "e1", "offset": 6},
        {"type": "subscribed", "recovered": True, "offset": 9, "epoch": "e1"},
    ),
    (
        {"epoch": "e1", "offset": 6},
        {"type": "subscribed", "recovered": False, "offset": 40, "epoch": "e1"},
    ),
    ({"epoch": "e1", "offset": 6}, {"type": "subscribed", "recovered": False}),
    ({"epoch": "e1", "offset": 6}, {"type": "subscribed", "offset": 9, "epoch": "e1"}),
    ({"epoch": "e1", "offset": 6}, {"type": "subscribed", "offset": 2, "epoch": "e2"}),
    ({"epoch": "e1", "offset": 6}, {"type": "message", "offset": 7, "epoch": "e1"}),
    ({"epoch": "e1", "offset": 6}, {"type": "message", "offset": 6, "epoch": "e1"}),
    ({"epoch": "e1", "offset": 6}, {"type": "message", "offset": 1, "epoch": "e2"}),
    ({"epoch": "e1", "offset": 6}, {"type": "message", "offset": True, "epoch": "e1"}),
    ({"epoch": "e1", "offset": 6}, {"type": "message"}),
    (None, {"type": "message", "offset": 3, "epoch": "e1"}),
    (None, {"type": "message"}),
]


def recovery_step(last: dict | None, frame: dict) -> dict:
    """The Python client's step for one case, in the shape recovery.js returns."""
    position = Position(**last) if last else None
    if frame["type"] == "subscribed":
        after, missed = subscribed_step(position, frame)
        step = {"missed": missed.value if missed else None}
    else:
        after, delivery = message_step(position, frame)
        step = {"delivery": delivery.value}
    return {"position": asdict(after) if after else None, **step}


def test_the_pages_recovery_policy_is_the_python_clients(new_page, console_worker):
    page = new_page()
    console_open(page, console_worker)
    found = page.evaluate(
        """async (cases) => {
          const { messageStep, subscribedStep } = await import("/static/console/recovery.js");
          return cases.map(([last, frame]) =>
            (frame.type === "subscribed" ? subscribedStep : messageStep)(last, frame));
        }""",
        RECOVERY_CASES,
    )
    assert found == [recovery_step(last, frame) for last, frame in RECOVERY_CASES]


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


def test_the_state_tables_cover_every_state_and_the_page_state_follows_login_and_socket(
    new_page, console_worker
):
    page = new_page()
    console_open(page, console_worker)
    found = page.evaluate(
        """async () => {
          const s = await import("/static/console/states.js");
          const { closeIsFatal } = await import("/static/console/closecodes.js");
          const socketStates = Object.values(s.SocketState);
          const pages = {};
          for (const socket of socketStates) {
            pages[socket] = [s.pageState({ loggedIn: true, socket }),
                             s.pageState({ loggedIn: false, socket })];
          }
          return {
            moves: s.SOCKET_MOVES,
            pages,
            pageStates: Object.values(s.PageState).sort(),
            pageTable: Object.keys(s.PAGE_CONTROLS).sort(),
            echoTable: Object.keys(s.ECHO_CONTROLS).sort(),
            socketStates: socketStates.sort(),
            fatal: [null, 1000, 4001, 4499, 4500, 4501, 4502, 4999, 5000].map(closeIsFatal),
          };
        }"""
    )
    assert found["moves"] == {
        "idle": ["connecting"],
        "connecting": ["open", "waiting", "idle", "closing"],
        "open": ["waiting", "idle", "closing"],
        "waiting": ["connecting", "idle"],
        "closing": ["idle"],
    }
    assert found["pages"] == {
        "idle": ["disconnected", "logged-out"],
        "connecting": ["connecting", "logged-out"],
        "waiting": ["connecting", "logged-out"],
        "open": ["open", "logged-out"],
        "closing": ["closing", "logged-out"],
    }
    assert found["pageTable"] == found["pageStates"]
    assert found["echoTable"] == found["socketStates"] == sorted(found["moves"])
    assert found["fatal"] == [False, False, False, False, True, True, True, True, False]
