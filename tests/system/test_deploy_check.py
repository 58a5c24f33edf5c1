"""Production settings: `check --deploy` is clean, and a missing secret key stops startup."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.system.stack import ROOT

MISSING_SECRET = "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0"


@pytest.fixture
def production_env(tmp_path, redis_server) -> dict[str, str]:
    """The documented production variables, and nothing inherited from this test process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_", "WS_"))}
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        JWT_SIGNING_KEY=secrets.token_urlsafe(40),
        ACCOUNTS_ALLOW_REGISTRATION="0",
        DJANGO_ALLOWED_HOSTS="switchboard.example.com",
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        DJANGO_SECURE_HSTS_PRELOAD="1",
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        LOG_FILE=str(tmp_path / "deploy.log"),
    )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_check_deploy_reports_no_issues_with_the_production_variables(production_env):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "command",
    [["manage.py", "check"], ["-m", "daphne", "-p", "0", "config.asgi:application"]],
    ids=["manage.py", "daphne"],
)
def test_startup_without_a_secret_key_fails_naming_the_fix(production_env, command):
    del production_env["DJANGO_SECRET_KEY"]
    result = run(command, production_env)
    assert result.returncode != 0
    assert MISSING_SECRET in result.stderr


def test_check_deploy_names_each_switchboard_finding_with_its_id(production_env):
    del production_env["JWT_SIGNING_KEY"]
    production_env["ACCOUNTS_ALLOW_REGISTRATION"] = "1"
    production_env["REDIS_URL"] = ""

    result = run(["manage.py", "check", "--deploy"], production_env)

    for expected in ("switchboard.W001", "switchboard.W003", "switchboard.W006"):
        assert expected in result.stderr, result.stderr
    assert "HINT: Set JWT_SIGNING_KEY to its own random value of 32 bytes or more." in (
        result.stderr
    )


@pytest.mark.parametrize(
    "command",
    [["manage.py", "check"], ["-m", "daphne", "-p", "0", "config.asgi:application"]],
    ids=["manage.py", "daphne"],
)
def test_startup_with_a_jwt_key_under_32_bytes_fails_naming_the_fix(production_env, command):
    production_env["JWT_SIGNING_KEY"] = "x" * 31

    result = run(command, production_env)

    assert result.returncode != 0
    assert "JWT_SIGNING_KEY (or DJANGO_SECRET_KEY, which it defaults to) and each of" in (
        result.stderr
    )
    assert "x" * 31 not in result.stderr
