"""What a banner (`make run`'s, `make cluster`'s) prints: its URLs and its commands, and a check
that each works as pasted into a fresh shell in the repository."""

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.system.stack import ROOT

URL = re.compile(r"\b(?:https?|wss?)://[^\s)\"',;]+")
# A command starts at `curl`, at `make`, or at manage.py's python with its variables before it.
COMMAND = re.compile(r"((?:[A-Z_]+=\S+ )*\S*python3? manage\.py .*|curl .*|make \S.*)$")
ADMIN = {
    "username": "frontdoor-admin",
    "email": "admin@example.com",
    "password": "Fr0nt-d00r pass!",
}


@dataclass(frozen=True)
class Banner:
    text: str

    @property
    def lines(self) -> list[str]:
        """Its lines, `\\`-continued ones joined."""
        return re.sub(r"\\\n\s*", "", self.text).splitlines()

    @property
    def urls(self) -> list[str]:
        """Every URL outside its commands, in order, once each (sentence punctuation dropped);
        a command's URLs are checked by running it."""
        prose = [COMMAND.sub("", line) for line in self.lines]
        found = [url.rstrip(".:") for line in prose for url in URL.findall(line)]
        return list(dict.fromkeys(found))

    @property
    def commands(self) -> list[str]:
        """Every command in it."""
        return [m.group(1).strip() for m in map(COMMAND.search, self.lines) if m]


def fresh_shell_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of a new terminal: the test's own variables minus every Switchboard and
    make setting, plus `base` (the test's database, log file and static folder)."""
    prefixes = ("DJANGO_", "JWT_", "WS_", "REDIS_", "DATABASE_", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **base)
    return env


def command_run(
    command: str, env: dict[str, str], *, admin: dict[str, str] = ADMIN
) -> subprocess.CompletedProcess:
    """Run one printed command as pasted into bash in the repository's root. createsuperuser
    gets --noinput and its DJANGO_SUPERUSER_* variables from `admin` (a test types nothing)."""
    env = dict(env)
    if "manage.py createsuperuser" in command:
        command += " --noinput"
        env.update({f"DJANGO_SUPERUSER_{k.upper()}": v for k, v in admin.items()})
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def url_get(url: str) -> httpx.Response:
    """GET an http URL, following redirects (/admin/ sends a visitor to its login page)."""
    return httpx.get(url, follow_redirects=True, timeout=10, trust_env=False)


def ticket_for(base: str, access: str) -> str:
    response = httpx.post(
        f"{base}/api/realtime/ticket/",
        headers={"Authorization": f"Bearer {access}"},
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def ws_url_check(url: str, *, base: str, access: str) -> str:
    """Open a printed ws:// URL (a <ticket> placeholder replaced by a fresh ticket) and return
    what the first exchange answered."""
    url = url.replace("<ticket>", ticket_for(base, access))
    with connect(url, proxy=None, open_timeout=10) as ws:
        if "/ws/echo/" in url:
            ws.send("hello")
            return ws.recv(timeout=10)
        return json.loads(ws.recv(timeout=10))["type"]


def session_with_header(ws_base: str, access: str) -> str:
    """The other way the banners name: the access token in the handshake's Authorization."""
    with connect(
        f"{ws_base}/ws/session/",
        proxy=None,
        open_timeout=10,
        additional_headers={"Authorization": f"Bearer {access}"},
    ) as ws:
        return json.loads(ws.recv(timeout=10))["type"]


def admin_login(base: str) -> httpx.Response:
    """Log in to the admin as ADMIN, the way a browser does: its CSRF cookie, then the form."""
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return client.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token,
                "username": ADMIN["username"],
                "password": ADMIN["password"],
                "next": "/admin/",
            },
            headers={"Origin": base, "Referer": f"{base}/admin/login/"},
            follow_redirects=True,
        )


def output_wait(path: Path, text: str, *, proc: subprocess.Popen, timeout: float) -> str:
    """Wait until `text` is in the file `path` (a process's output); fail if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        output = path.read_text(errors="replace") if path.exists() else ""
        if text in output:
            return output
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {text!r}:\n{output}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{text!r} not printed within {timeout} s:\n{output}")
        time.sleep(0.1)


def group_stop(proc: subprocess.Popen, *, sig: int, timeout: float = 30) -> int:
    """Stop the process group this test started (`make` and its recipe), as Ctrl-C would."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    return proc.returncode
