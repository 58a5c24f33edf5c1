"""The two distributions installed as a newcomer installs them: `pip install .` and
`pip install ./clients/python`, each into a fresh venv (no system site-packages), then used from
a folder outside the repository. Packages come from the locked wheels `make test` downloads
into `.venv/wheelhouse` (no index is asked at test time), at the versions of requirements.txt.
The dev venv's own client is checked to be this tree's, from any folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from core.version import __version__
from tests.system.stack import ROOT

CLIENT = ROOT / "clients" / "python"
SERVER_PACKAGES = ["accounts", "config", "console", "core", "operations", "realtime"]
# What a build leaves in a source tree, and what a checkout holds but a build never reads.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "staticfiles",
    "test-artifacts", "logs", ".cluster", ".pytest_cache", ".ruff_cache", "db.sqlite3*", ".env",
)  # fmt: skip
PIP_TIMEOUT = 600
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # filled by `make test` (the Makefile)
RUN_TIMEOUT = 120


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would let the dev venv or the tree leak in."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DJANGO_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **extra)
    return env


def run(args: list, cwd: Path, timeout: float = RUN_TIMEOUT, **env: str) -> str:
    """Run a command; its stdout, or a failure that shows both streams."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def lock_constraints(path: Path) -> Path:
    """requirements.txt's pins as a constraints file (pip takes no hashes in constraints)."""
    lines = (ROOT / "requirements.txt").read_text().replace("\\\n", " ").splitlines()
    pins = [line.split()[0] for line in lines if line and line[0] not in "# "]
    path.write_text("\n".join(pins) + "\n")
    return path


def venv_create(path: Path) -> Path:
    """A fresh venv of this interpreter's Python, without system site-packages; its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", path], cwd=path.parent)
    assert "include-system-site-packages = false" in (path / "pyvenv.cfg").read_text()
    return path / "bin" / "python"


def venv_pip_install(python: Path, source: Path, constraints: Path) -> None:
    """pip install `source` from the local wheels only (the build backend included)."""
    assert (WHEELHOUSE / ".").is_dir(), f"{WHEELHOUSE} is missing: `make test` downloads it"
    offline = ["--no-index", "--find-links", WHEELHOUSE]
    run(
        [python, "-m", "pip", "install", "--quiet", *offline, "-c", constraints, source],
        cwd=source.parent,
        timeout=PIP_TIMEOUT,
        PIP_FIND_LINKS="",
    )


def python_json(python: Path, code: str, cwd: Path, **env: str) -> dict:
    """Run `code` (which prints one JSON object) in that venv's python, from `cwd`."""
    return json.loads(run([python, "-c", code], cwd=cwd, **env))


DISTRIBUTION_FACTS = """
import importlib.metadata as metadata, json, sysconfig
dist = metadata.distribution({name!r})
print(json.dumps({{
    "version": dist.version,
    "files": sorted(str(f) for f in dist.files),
    "top_level": sorted(dist.read_text("top_level.txt").split()),
    "requires": sorted(dist.requires or []),
    "license": dist.metadata["License-Expression"],
    "site_packages": sysconfig.get_paths()["purelib"],
}}))
"""


def test_the_client_installs_alone_and_runs_from_any_folder(tmp_path):
    source = tmp_path / "src" / "python"
    shutil.copytree(CLIENT, source, ignore=NOT_SOURCES)
    python = venv_create(tmp_path / "venv")
    venv_pip_install(python, source, lock_constraints(tmp_path / "constraints.txt"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    usage = run([python, "-m", "switchboard_client", "--help"], cwd=elsewhere)
    assert usage.startswith("usage: python -m switchboard_client ")
    assert "--username" in usage

    facts = python_json(python, DISTRIBUTION_FACTS.format(name="switchboard-client"), elsewhere)
    assert facts["version"] == __version__
    assert facts["top_level"] == ["switchboard_client"]
    assert facts["license"] == "Apache-2.0"
    assert "switchboard_client/py.typed" in facts["files"]
    assert [Requirement(r).name for r in facts["requires"]] == ["httpx", "websockets"]
    imported = python_json(
        python,
        "import importlib.util, json, switchboard_client as c; print(json.dumps({"
        '"file": c.__file__, "version": c.__version__, "names": sorted(c.__all__),'
        '"django": importlib.util.find_spec("django") is not None}))',
        elsewhere,
    )
    site_packages = Path(facts["site_packages"])
    assert Path(imported["file"]) == site_packages / "switchboard_client" / "__init__.py"
    assert imported["version"] == __version__
    assert "SwitchboardClient" in imported["names"]
    assert imported["django"] is False  # the client needs nothing of the server


def test_the_server_installs_and_checks_from_any_folder(tmp_path):
    source = tmp_path / "src" / "switchboard"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    python = venv_create(tmp_path / "venv")
    venv_pip_install(python, source, lock_constraints(tmp_path / "constraints.txt"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    facts = python_json(python, DISTRIBUTION_FACTS.format(name="switchboard"), elsewhere)
    assert facts["version"] == __version__
    assert facts["license"] == "Apache-2.0"
    assert facts["top_level"] == SERVER_PACKAGES
    # Every file of the six packages is installed (modules, migrations, the console's page
    # and assets), and nothing from outside them (no tests/, bench/, deploy/).
    tracked = sorted(
        str(path.relative_to(source))
        for package in SERVER_PACKAGES
        for path in (source / package).rglob("*")
        if path.is_file()
    )
    installed = [f for f in facts["files"] if f.split("/")[0] in SERVER_PACKAGES]
    assert [f for f in installed if not f.endswith(".pyc")] == tracked
    assert {f.split("/")[0] for f in facts["files"]} == {
        *SERVER_PACKAGES,
        f"switchboard-{__version__}.dist-info",
    }

    imported = python_json(
        python,
        "import json, accounts, config, console, core, operations, realtime;"
        "print(json.dumps({m.__name__: m.__file__ for m in "
        "(accounts, config, console, core, operations, realtime)}))",
        elsewhere,
    )
    site_packages = Path(facts["site_packages"])
    assert imported == {p: str(site_packages / p / "__init__.py") for p in SERVER_PACKAGES}

    django_admin = python.parent / "django-admin"
    settings = dict(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY="packaging-test-secret-key-not-for-production-0123456789",
        DJANGO_DEBUG="0",
        DJANGO_ENV_FILE="",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        LOG_FILE=str(tmp_path / "logs" / "switchboard.log"),
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        REDIS_URL="",
    )
    checked = run([django_admin, "check"], cwd=elsewhere, **settings)
    assert checked == "System check identified no issues (0 silenced).\n"
    run([django_admin, "migrate", "--noinput", "-v", "0"], cwd=elsewhere, **settings)
    run([django_admin, "collectstatic", "--noinput", "-v", "0"], cwd=elsewhere, **settings)
    collected = tmp_path / "static"
    assert (collected / "console" / "app.js").read_text() == (
        ROOT / "console" / "static" / "console" / "app.js"
    ).read_text()
    assert (collected / "drf_spectacular_sidecar").is_dir()


def test_the_dev_venv_imports_this_trees_client_from_any_folder(tmp_path):
    code = "import json, switchboard_client as c; print(json.dumps({'file': c.__file__}))"
    imported = python_json(Path(sys.executable), code, tmp_path)
    assert imported["file"] == str(CLIENT / "switchboard_client" / "__init__.py")
    usage = run([sys.executable, "-m", "switchboard_client", "--help"], cwd=tmp_path)
    assert usage.startswith("usage: python -m switchboard_client ")
