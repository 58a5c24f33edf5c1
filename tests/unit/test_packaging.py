"""The packaging stays true: one version everywhere, the ranges of requirements.in are the
distributions' dependencies, every pin carries hashes and is installed with them, a LICENSE."""

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from django.test import Client
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core.version import __version__

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
SERVER_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CLIENT_PROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text())
RELEASE_HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)
VENV_TARGETS = ("$(VENV)/.runtime:", "$(VENV)/.dev:")


def module_version(path: Path) -> str:
    """The literal `__version__ = "…"` of a module, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__version__"]:
            return node.value.value
    raise AssertionError(f"no __version__ in {path}")


def requirement_key(text: str) -> tuple[str, frozenset[str], str]:
    """A requirement as (canonical name, extras, specifier), so spelling cannot differ."""
    requirement = Requirement(text)
    return (
        canonicalize_name(requirement.name),
        frozenset(requirement.extras),
        str(requirement.specifier),
    )


def requirements_in() -> list[str]:
    lines = (ROOT / "requirements.in").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def locked_entries(name: str) -> list[str]:
    """The entries of a pip-compile output, each with its continuation lines joined."""
    text = (ROOT / name).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] not in "# "]


def make_recipe(target: str) -> list[str]:
    """The recipe lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(target))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


# -- one version ------------------------------------------------------------------------------


def test_the_server_distribution_takes_its_version_from_core_version():
    assert "version" not in SERVER_PROJECT["project"]
    assert SERVER_PROJECT["project"]["dynamic"] == ["version"]
    dynamic = SERVER_PROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic == {"version": {"attr": "core.version.__version__"}}
    assert module_version(ROOT / "core" / "version.py") == __version__


def test_the_openapi_document_reports_the_version():
    response = Client().get("/api/schema/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json()["info"]["version"] == __version__


def test_the_asyncapi_document_reports_the_version():
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert document["info"]["version"] == __version__


def test_the_client_is_released_at_the_servers_version():
    dynamic = CLIENT_PROJECT["tool"]["setuptools"]["dynamic"]
    assert CLIENT_PROJECT["project"]["dynamic"] == ["version"]
    assert dynamic == {"version": {"attr": "switchboard_client.__version__"}}
    assert module_version(CLIENT / "switchboard_client" / "__init__.py") == __version__


def test_the_changelog_starts_with_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog\n")
    assert RELEASE_HEADING.findall(changelog)[0] == __version__


# -- dependencies and locks -------------------------------------------------------------------


def test_requirements_in_holds_exactly_the_distributions_dependencies():
    server = [requirement_key(r) for r in SERVER_PROJECT["project"]["dependencies"]]
    client = [requirement_key(r) for r in CLIENT_PROJECT["project"]["dependencies"]]
    pinned = [requirement_key(r) for r in requirements_in()]
    assert len(set(pinned)) == len(pinned)
    assert not {name for name, _, _ in server} & {name for name, _, _ in client}
    assert sorted(pinned, key=str) == sorted(server + client, key=str)


def test_the_client_depends_on_websockets_and_httpx_only():
    names = {requirement_key(r)[0] for r in CLIENT_PROJECT["project"]["dependencies"]}
    assert names == {"websockets", "httpx"}


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_requirement_is_pinned_with_hashes(name):
    entries = locked_entries(name)
    assert len(entries) > 20
    for entry in entries:
        requirement, *options = entry.split()
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*(\[[a-z0-9,_-]+\])?==[\w.]+", requirement), entry
        assert options and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options)


def test_the_locks_pin_the_same_version_of_every_shared_package():
    runtime = dict(e.split()[0].split("==") for e in locked_entries("requirements.txt"))
    dev = dict(e.split()[0].split("==") for e in locked_entries("requirements-dev.txt"))
    shared = runtime.keys() & dev.keys()
    assert shared, "requirements-dev.in is constrained by requirements.txt"
    assert {n: dev[n] for n in shared} == {n: runtime[n] for n in shared}


@pytest.mark.parametrize("target", VENV_TARGETS)
def test_the_venv_targets_install_the_locks_with_require_hashes(target):
    recipe = make_recipe(target)
    installs = [line for line in recipe if "-r requirements" in line]
    assert installs
    assert all("--require-hashes" in line for line in installs)


def test_the_runtime_venv_installs_the_client_editable_without_dependencies():
    editable = [line for line in make_recipe("$(VENV)/.runtime:") if "--editable" in line]
    assert editable == ["$(PIP_INSTALL) --no-deps --editable ./clients/python"]


def test_make_lock_generates_hashes():
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    compile_line = next(line for line in makefile.splitlines() if line.startswith("PIP_COMPILE"))
    assert "--generate-hashes" in compile_line
    assert make_recipe("lock:") == [
        "$(PIP_COMPILE) -o requirements.txt requirements.in",
        "$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in",
    ]


def test_the_build_backend_is_pinned_and_the_same_for_both_distributions():
    server, client = SERVER_PROJECT["build-system"], CLIENT_PROJECT["build-system"]
    assert server == client
    assert server["build-backend"] == "setuptools.build_meta"
    [requires] = server["requires"]
    assert re.fullmatch(r"setuptools==\d+\.\d+\.\d+", requires)


# -- license ----------------------------------------------------------------------------------


def test_the_license_is_the_apache_2_text_for_both_distributions():
    text = (ROOT / "LICENSE").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:3] == [
        "Apache License",
        "Version 2.0, January 2004",
        "http://www.apache.org/licenses/",
    ]
    assert "END OF TERMS AND CONDITIONS" in lines
    assert "APPENDIX: How to apply the Apache License to your work." in lines
    assert (CLIENT / "LICENSE").read_text() == text
    for project in (SERVER_PROJECT, CLIENT_PROJECT):
        assert project["project"]["license"] == "Apache-2.0"
        assert project["project"]["license-files"] == ["LICENSE"]


def test_the_venv_gets_the_locked_pip_before_anything_else():
    """The venv's own pip refuses the hash-checked install when a locked package is also
    asked for with extras and the index holds a newer one (python-socks[asyncio] for
    picows, CacheControl[filecache] for pip-audit): the Makefile installs the locked pip
    first, picked out of requirements-dev.txt by its awk line."""
    import subprocess

    makefile = (ROOT / "Makefile").read_text()
    rule = makefile[makefile.index("$(BIN)/python:") :].split("\n\n", 1)[0]
    awk = re.search(r"awk '([^']+)'", rule)
    assert awk and "--require-hashes --no-deps -r $(VENV)/pip-lock.txt" in rule, rule
    picked = subprocess.run(
        ["awk", awk[1], str(ROOT / "requirements-dev.txt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert picked[0].startswith("pip==") and picked[0] == picked[0].rstrip("\\")
    assert [p for p in picked[1:] if p != "\\"] and all(
        p.startswith("--hash=sha256:") for p in picked[1:] if p != "\\"
    )
