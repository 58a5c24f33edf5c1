"""deploy/systemd/: what each unit promises in its comments is what its settings do, and
systemd itself (`systemd-analyze verify`) accepts every unit."""

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[3] / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def unit_settings(name: str) -> dict[str, list[str]]:
    """`Key` -> every value it is given in the unit file `name` (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_migrations_run_before_the_workers_on_every_start_or_restart_of_the_target():
    migrate, worker = (
        unit_settings("switchboard-migrate.service"),
        unit_settings("switchboard@.service"),
    )

    # `systemctl restart switchboard.target` (a deploy) restarts the migrate unit too ...
    assert migrate["PartOf"] == ["switchboard.target"]
    assert migrate["Before"] == ["switchboard.target"]
    # ... and each worker waits for it and does not start when it failed.
    assert worker["Requires"] == ["switchboard-migrate.service"]
    assert "switchboard-migrate.service" in worker["After"][0].split()
    assert worker["PartOf"] == ["switchboard.target"]
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
        "switchboard@.service",
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
    for program in ("srv/switchboard/.venv/bin/python", "srv/switchboard/.venv/bin/daphne"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\n")
        (root / program).chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy("/bin/sh", root / "bin/sh")
    names = ["switchboard-migrate.service", "switchboard@8001.service", "switchboard.target"]
    names += ["switchboard-prune.service", "switchboard-prune.timer"]

    result = subprocess.run(
        [analyze, f"--root={root}", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")
