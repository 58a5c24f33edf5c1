"""The packages import downward only: config → operations | console → realtime → accounts →
core (docs/LAYOUT.md). import-linter checks the contracts in pyproject.toml's
[tool.importlinter]; an upward import, and so any cycle between packages, fails here."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LINTER = PYPROJECT["tool"]["importlinter"]


def test_every_installed_package_is_under_the_contracts():
    installed = {
        name
        for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
        if "." not in name
    }
    assert set(LINTER["root_packages"]) == installed
    layered = {
        package.strip()
        for contract in LINTER["contracts"]
        if contract["type"] == "layers"
        for layer in contract["layers"]
        for package in layer.split("|")
    }
    assert layered == installed


def test_no_package_imports_one_above_it():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), f"{lint_imports} is missing: `make test` installs import-linter"
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
