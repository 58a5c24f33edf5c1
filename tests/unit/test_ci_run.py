"""`.ci/run`: with CI set, a missing PostgreSQL or Chromium fails the run before the suite
starts; without CI, the PostgreSQL run is skipped as before. `make` and `python3` are stand-ins
on PATH that record their arguments (the real suite never runs here)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def ci_run(tmp_path: Path, *, ci: str | None, postgres: bool) -> subprocess.CompletedProcess:
    """Run .ci/run with stand-in `make` (logs its arguments) and `python3` (PostgreSQL answers
    or not)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make_log = tmp_path / "make.log"
    (bin_dir / "make").write_text(f'#!/bin/sh\necho "$*" >> {make_log}\n')
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexit {0 if postgres else 1}\n")
    for stand_in in bin_dir.iterdir():
        stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=30
    )
    result.make_calls = make_log.read_text().splitlines() if make_log.exists() else []
    return result


@pytest.mark.parametrize("ci", ["1", "true"])
def test_under_ci_a_missing_postgresql_fails_before_the_suite_runs(tmp_path, ci):
    result = ci_run(tmp_path, ci=ci, postgres=False)

    assert result.returncode == 1
    assert "ERROR: CI is set and this is missing: PostgreSQL on 127.0.0.1:5432" in result.stderr
    assert result.make_calls == ["chromium"]  # never `test`


@pytest.mark.skipif(CHROMIUM.exists(), reason=f"{CHROMIUM} is installed here")
def test_under_ci_a_missing_chromium_fails_before_the_suite_runs(tmp_path):
    result = ci_run(tmp_path, ci="1", postgres=True)

    assert result.returncode == 1
    assert f"ERROR: CI is set and this is missing: {CHROMIUM}" in result.stderr
    assert "PostgreSQL" not in result.stderr
    assert result.make_calls == ["chromium"]


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_without_ci_a_missing_postgresql_skips_its_run(tmp_path, ci):
    result = ci_run(tmp_path, ci=ci, postgres=False)

    assert result.returncode == 0, result.stderr
    assert "No PostgreSQL on 127.0.0.1:5432: the PostgreSQL run is skipped" in result.stdout
    assert result.make_calls == ["test"]


def test_with_postgresql_the_suite_runs_again_on_it(tmp_path):
    result = ci_run(tmp_path, ci=None, postgres=True)

    assert result.returncode == 0, result.stderr
    assert result.make_calls == [
        "test",
        "test TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test PYTEST_ARGS=-m 'not load'",
    ]
