"""Settings read from the environment: empty values (a copied .env.example) mean unset."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRINT = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SECRET_KEY == 'k' * 50, s.SIMPLE_JWT['SIGNING_KEY'] == s.SECRET_KEY)"
)


def settings_run(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_"))}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings", DJANGO_ENV_FILE="", **env)
    return subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env=environment, capture_output=True, text=True
    )


def test_an_empty_jwt_signing_key_falls_back_to_the_secret_key():
    result = settings_run(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 50, JWT_SIGNING_KEY="")
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_an_empty_secret_key_with_debug_off_fails_with_the_fix_named():
    result = settings_run(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0" in result.stderr


def test_an_empty_secret_key_with_debug_on_uses_the_dev_only_key():
    result = settings_run(DJANGO_DEBUG="1", DJANGO_SECRET_KEY="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def pool_option(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_"))}
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings", DJANGO_ENV_FILE="", DJANGO_DEBUG="1", **env
    )
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['OPTIONS'].get('pool'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgresql_uses_psycopgs_pool_unless_database_pool_is_off():
    postgres = "postgres://switchboard@127.0.0.1:5432/switchboard"

    assert pool_option(DATABASE_URL=postgres) == "{'min_size': 2, 'max_size': 8, 'timeout': 5}"
    assert pool_option(DATABASE_URL=postgres, DATABASE_POOL="0") == "None"
    assert pool_option(DATABASE_URL="sqlite:///x.sqlite3", DATABASE_POOL="1") == "None"


def database_settings(**env: str) -> subprocess.CompletedProcess:
    """What Django would hand psycopg, as JSON: server-side cursors off, the prepare threshold
    (psycopg's connect() argument; None: never prepare), the pool."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_"))}
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings", DJANGO_ENV_FILE="", DJANGO_DEBUG="1", **env
    )
    script = (
        "import json, django; django.setup(); from django.db import connection; "
        "params = connection.get_connection_params(); "
        "print(json.dumps([bool(connection.settings_dict.get('DISABLE_SERVER_SIDE_CURSORS')), "
        "params.get('prepare_threshold', 'unset'), connection.settings_dict['OPTIONS']['pool']]))"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True
    )


POSTGRES = "postgres://switchboard@127.0.0.1:6432/switchboard"
POOL = {"min_size": 2, "max_size": 8, "timeout": 5}


def test_database_pgbouncer_turns_server_side_cursors_and_prepared_statements_off():
    behind = database_settings(
        DATABASE_URL=f"{POSTGRES}?prepare_threshold=5", DATABASE_PGBOUNCER="1"
    )
    direct = database_settings(DATABASE_URL=POSTGRES)

    assert behind.returncode == 0, behind.stderr
    assert json.loads(behind.stdout) == [True, None, POOL]  # the URL's threshold overruled
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout) == [False, None, POOL]  # Django's own default: None


def test_database_pgbouncer_without_postgresql_fails_with_the_fix_named():
    result = database_settings(DATABASE_URL="sqlite:///x.sqlite3", DATABASE_PGBOUNCER="1")

    assert result.returncode != 0
    assert "DATABASE_PGBOUNCER=1 needs DATABASE_URL to name PgBouncer" in result.stderr
