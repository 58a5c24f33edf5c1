"""`make run` as a newcomer meets it: the real `make run` (its migrate, collectstatic, banner
and daphne, DEBUG on by its own `export`), then every URL its banner prints is fetched and every
command it prints is pasted into a fresh shell (no DJANGO_* variable) in the repository."""

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from tests.system.stack import ROOT, free_port, port_wait

BANNER_START = "Switchboard is starting on "


@dataclass
class MakeRun:
    base: str
    env: dict[str, str]  # a fresh shell's, pointed at the test's database
    output_path: Path

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    @property
    def banner(self) -> Banner:
        start = self.output.index(BANNER_START)
        return Banner(self.output[start:].split("\n\n", 1)[0])


@pytest.fixture(scope="module")
def make_run(tmp_path_factory) -> Iterator[MakeRun]:
    """`make run` on a free port, on this venv (its install step taken as done: `-o`)."""
    workdir = tmp_path_factory.mktemp("make-run")
    port = free_port()
    env = fresh_shell_env(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "LOG_FILE": str(workdir / "errors.log"),
            "DJANGO_STATIC_ROOT": str(workdir / "static"),
            "DJANGO_ENV_FILE": "",  # never a developer's .env
        }
    )
    venv = Path(sys.prefix)
    output_path = workdir / "make-run.out"
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"VENV={venv}", "-o", f"{venv}/.runtime"]
            + ["HOST=127.0.0.1", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port_wait(port, timeout=120, proc=proc)
        output_wait(output_path, "Listening on TCP address", proc=proc, timeout=30)
        yield MakeRun(base=f"http://127.0.0.1:{port}", env=env, output_path=output_path)
    finally:
        group_stop(proc, sig=signal.SIGINT)  # Ctrl-C


def test_make_run_prints_the_console_api_docs_admin_health_and_both_websockets(make_run):
    base, ws = make_run.base, make_run.base.replace("http", "ws")
    assert make_run.banner.urls == [
        f"{base}/",
        f"{base}/api/docs/",
        f"{base}/api/schema/",
        f"{base}/admin/",
        f"{base}/healthz",
        f"{base}/readyz",
        f"{ws}/ws/echo/",
        f"{ws}/ws/session/?ticket=<ticket>",
    ]
    assert "?token=" not in make_run.banner.text
    assert "Access tokens last 5 minutes (JWT_ACCESS_TTL=300). Close 4001 means the token " in (
        make_run.banner.text
    )


def test_every_http_url_make_run_prints_answers_200(make_run):
    answers = {url: url_get(url) for url in make_run.banner.urls if url.startswith("http")}

    assert {url: r.status_code for url, r in answers.items()} == dict.fromkeys(answers, 200)
    assert "swagger-ui" in answers[f"{make_run.base}/api/docs/"].text
    assert str(answers[f"{make_run.base}/admin/"].url).endswith("/admin/login/?next=/admin/")


def test_every_command_make_run_prints_works_pasted_into_a_fresh_shell(make_run):
    commands = make_run.banner.commands

    results = [command_run(command, make_run.env) for command in commands]

    assert [(r.returncode, r.stderr[-300:]) for r in results] == [(0, "")] * len(commands)
    assert [c.split(" manage.py ")[-1] if "manage.py" in c else c[:4] for c in commands] == [
        "createsuperuser",
        "curl",
        "curl",
    ]
    superuser, registered, tokens = results
    assert superuser.stdout == "Superuser created successfully.\n"
    assert json.loads(registered.stdout)["username"] == "alice"
    assert sorted(json.loads(tokens.stdout)) == ["access", "refresh"]
    # The admin user is in make run's database: its login page lets them in.
    logged_in = admin_login(make_run.base)
    assert logged_in.status_code == 200
    assert str(logged_in.url) == f"{make_run.base}/admin/"
    assert "Site administration" in logged_in.text
    assert ADMIN["username"] in logged_in.text

    # Both WebSockets, as printed (a ticket for <ticket>), and the Authorization header way.
    access = json.loads(tokens.stdout)["access"]
    ws_urls = [url for url in make_run.banner.urls if url.startswith("ws")]
    answers = [ws_url_check(url, base=make_run.base, access=access) for url in ws_urls]
    assert answers == ["Server received: hello", "welcome"]
    assert session_with_header(make_run.base.replace("http", "ws"), access) == "welcome"


def test_a_development_start_says_it_is_one_worker_without_warning(make_run):
    output = make_run.output

    assert (
        " INFO switchboard.realtime [" in output
        and "using the in-memory channel layer: one worker "
        "(set REDIS_URL to run several behind one Redis)."
        in output
    )
    assert " WARNING " not in output
    assert "REDIS_URL is not set" not in output
