"""deploy/systemd/: what each unit promises in its comments is what its settings do, each
worker unit runs deploy/servers.py's command line for its server, and systemd itself
(`systemd-analyze verify`) accepts every unit."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.servers import GRACEFUL_SHUTDOWN_SECONDS, SERVERS, SUPPORTED

UNITS = Path(__file__).resolve().parents[3] / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
VENV_BIN = "/srv/switchboard/.venv/bin/"
# The worker unit of each supported server (instance = port).
WORKER_UNITS = {
    "daphne": "switchboard@.service",
    "uvicorn": "switchboard-uvicorn@.service",
}


def unit_settings(name: str) -> dict[str, list[str]]:
    """`Key` -> every value it is given in the unit file `name` (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_each_worker_unit_runs_the_command_line_of_deploy_servers_for_its_server():
    assert sorted(WORKER_UNITS) == sorted(SUPPORTED)
    for name, unit in WORKER_UNITS.items():
        (command,) = unit_settings(unit)["ExecStart"]
        program, *args = SERVERS[name].argv(
            host="127.0.0.1", port="%i", max_message_bytes="${WS_MAX_MESSAGE_BYTES}"
        )

        assert shlex.split(command) == [VENV_BIN + program, *args], unit


def test_a_unit_passing_the_message_cap_sets_its_default_for_an_environment_file_without_it():
    # Unset, systemd would pass an empty word; EnvironmentFile= overrides Environment=, so
    # /etc/switchboard/env's WS_MAX_MESSAGE_BYTES, when set, is the one both server and
    # application read. 65536 is config/settings.py's default.
    for unit in WORKER_UNITS.values():
        settings = unit_settings(unit)
        if "${WS_MAX_MESSAGE_BYTES}" in settings["ExecStart"][0]:
            assert settings["Environment"] == ["WS_MAX_MESSAGE_BYTES=65536"], unit
        else:
            assert "Environment" not in settings, unit
    assert "${WS_MAX_MESSAGE_BYTES}" in unit_settings(WORKER_UNITS["uvicorn"])["ExecStart"][0]


def test_every_worker_unit_outlasts_the_graceful_shutdown_and_is_hardened_alike():
    daphne = unit_settings(WORKER_UNITS["daphne"])
    for unit in WORKER_UNITS.values():
        settings = unit_settings(unit)
        assert settings["KillSignal"] == ["SIGTERM"], unit
        assert int(settings["TimeoutStopSec"][0]) > GRACEFUL_SHUTDOWN_SECONDS, unit
        for key in ("Type", "Restart", "RestartSec", "NoNewPrivileges", "ProtectSystem"):
            assert settings[key] == daphne[key], (unit, key)
        assert settings["PrivateTmp"] == daphne["PrivateTmp"] == ["true"], unit


def test_the_target_runs_the_worker_units_enabled_and_names_none_itself():
    target = unit_settings("switchboard.target")

    # Which server runs on a port is which unit is enabled there: a Wants= here would start
    # daphne on a port where uvicorn was enabled instead.
    assert "Wants" not in target and "Requires" not in target
    for unit in WORKER_UNITS.values():
        assert unit_settings(unit)["WantedBy"] == ["switchboard.target"], unit


def test_migrations_run_before_the_workers_on_every_start_or_restart_of_the_target():
    migrate = unit_settings("switchboard-migrate.service")

    # `systemctl restart switchboard.target` (a deploy) restarts the migrate unit too ...
    assert migrate["PartOf"] == ["switchboard.target"]
    assert migrate["Before"] == ["switchboard.target"]
    # ... and each worker waits for it and does not start when it failed.
    for unit in WORKER_UNITS.values():
        worker = unit_settings(unit)
        assert worker["Requires"] == ["switchboard-migrate.service"], unit
        assert "switchboard-migrate.service" in worker["After"][0].split(), unit
        assert worker["PartOf"] == ["switchboard.target"], unit
    # Active after it ran: a worker restarted alone does not run the migrations again.
    assert (migrate["Type"], migrate["RemainAfterExit"]) == (["oneshot"], ["yes"])
    assert [command.split(" manage.py ")[1] for command in migrate["ExecStart"]] == [
        "migrate --noinput",
        "collectstatic --noinput",
        "check --deploy",
    ]


def test_every_unit_runs_as_the_service_user_with_the_one_environment_file():
    for name in (
        "switchboard-migrate.service",
        *WORKER_UNITS.values(),
        "switchboard-prune.service",
    ):
        settings = unit_settings(name)
        assert (settings["User"], settings["Group"]) == (["switchboard"], ["switchboard"]), name
        assert settings["EnvironmentFile"] == ["/etc/switchboard/env"], name
        assert settings["WorkingDirectory"] == ["/srv/switchboard"], name


def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze or /usr/lib/systemd/system is missing here")
    # A root holding the units, systemd's own, and stand-ins for the programs they run.
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNITS, root / "etc/systemd/system")
    for name in ("python", *SUPPORTED):
        program = root / VENV_BIN.lstrip("/") / name
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy("/bin/sh", root / "bin/sh")
    names = ["switchboard-migrate.service", "switchboard.target"]
    names += [unit.replace("@", "@8001") for unit in WORKER_UNITS.values()]
    names += ["switchboard-prune.service", "switchboard-prune.timer"]

    result = subprocess.run(
        [analyze, f"--root={root}", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")
