"""deploy/kubernetes/: every manifest is valid for the Kubernetes versions named here (the
schemas kubernetes-validate bundles, so no network), the workers run deploy/servers.py's
uvicorn line and outlast its drain, their probes and Prometheus' scrapes reach Django, and the
ConfigMap and Secret set only variables the service reads, every secret one in the Secret."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import environ
import kubernetes_validate
import pytest
import yaml

from deploy.servers import GRACEFUL_SHUTDOWN_SECONDS, SERVERS
from realtime.server.shutdown import SHUTDOWN_BUDGET
from tests.unit.test_docs_tables import read_variables

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (the preStop sleep action is on by default from
# 1.30 on) and the newest whose schemas the pinned kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
# Not a Kubernetes object: kustomize's own file.
KUSTOMIZATION = "kustomization.yaml"
# Left out of the kustomization: the real Secret is made outside Git (secret.yaml says why).
NOT_APPLIED = {"secret.yaml"}
# Variables a container sets that the service does not read, with the reason.
HELPER_VARIABLES = {"POD_IP": "the pod's address, added to DJANGO_ALLOWED_HOSTS"}
SECRET_LOOKING = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|REDIS_URL")
PLACEHOLDER = "change-me"
POD_IP = "10.1.2.3"
# The manifests that run the service's image.
POD_KINDS = ("Deployment", "Job", "CronJob")
# A worker listens on every interface of its pod: the Service reaches it at the pod's address.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != KUSTOMIZATION)


def manifest(kind: str) -> dict[str, Any]:
    """The one manifest of that kind."""
    (found,) = [
        doc
        for path in manifest_files()
        if (doc := yaml.safe_load(path.read_text()))["kind"] == kind
    ]
    return found


def pod_spec(kind: str) -> dict[str, Any]:
    """The pod template's spec of the Deployment, the Job or the CronJob."""
    spec = manifest(kind)["spec"]
    return (spec["jobTemplate"]["spec"] if kind == "CronJob" else spec)["template"]["spec"]


def containers(kind: str) -> list[dict[str, Any]]:
    """Every container of that kind's pods, init containers first."""
    spec = pod_spec(kind)
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_containers() -> list[dict[str, Any]]:
    return [container for kind in POD_KINDS for container in containers(kind)]


def worker() -> dict[str, Any]:
    (container,) = pod_spec("Deployment")["containers"]
    return container


def expand(value: str, environment: dict[str, str]) -> str:
    """The kubelet's `$(NAME)` expansion: a variable defined before takes its value, any other
    reference is left as it is, and `$$` is one `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return environment.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """What the kubelet gives the container: the ConfigMap's and Secret's keys (envFrom), then
    each `env` entry in order, its value expanded over the variables set before it."""
    sources = {
        ("configMapRef", manifest("ConfigMap")["metadata"]["name"]): manifest("ConfigMap")["data"],
        ("secretRef", manifest("Secret")["metadata"]["name"]): manifest("Secret")["stringData"],
    }
    environment: dict[str, str] = {}
    for source in container["envFrom"]:
        ((ref, target),) = source.items()
        environment.update(sources[ref, target["name"]])
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
            environment[variable["name"]] = POD_IP
        else:
            environment[variable["name"]] = expand(variable["value"], environment)
    return environment


def static_mount(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The container's one volume mount at `path`."""
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    return mount


def settings_run(script: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `script` with config.settings in exactly `environment` (none of the test run's
    settings variables, nor a .env file)."""
    read = read_variables()
    base = {k: v for k, v in os.environ.items() if k not in read and not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_ENV_FILE": "",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---------------------------------------------------------------------------
# Every manifest is a valid Kubernetes object, and the kustomization applies them
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_is_valid_for_each_named_kubernetes_version(path, version):
    (document,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]

    # Strict: a field the schema does not have (a typo) fails too. The schemas used are that
    # version's, not an older one's.
    assert kubernetes_validate.validate(document, version, strict=True) == version


def test_the_validator_refuses_what_kubernetes_would_refuse():
    misspelled = manifest("Deployment")
    misspelled["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 30
    mistyped = manifest("Deployment")
    mistyped["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"

    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriodSecond"):
        kubernetes_validate.validate(misspelled, KUBERNETES_VERSIONS[0], strict=True)
    with pytest.raises(kubernetes_validate.ValidationError, match="'8000' is not of type"):
        kubernetes_validate.validate(mistyped, KUBERNETES_VERSIONS[0], strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret():
    kustomization = yaml.safe_load((MANIFESTS / KUSTOMIZATION).read_text())
    listed = kustomization["resources"]

    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted({p.name for p in manifest_files()} - NOT_APPLIED)
    (image,) = kustomization["images"]
    for container in all_containers():
        assert container["image"].split(":")[0] == image["name"], container["name"]


# ---------------------------------------------------------------------------
# The workers: deploy/servers.py's command line, probes, drain
# ---------------------------------------------------------------------------
def test_the_worker_runs_the_uvicorn_line_of_deploy_servers_on_every_interface():
    container = worker()
    environment = container_environment(container)
    cap = manifest("ConfigMap")["data"]["WS_MAX_MESSAGE_BYTES"]

    assert container["command"] == SERVERS["uvicorn"].argv(
        host=EVERY_INTERFACE, port=8000, max_message_bytes="$(WS_MAX_MESSAGE_BYTES)"
    )
    assert "args" not in container
    # The kubelet fills the message cap in from the ConfigMap: the one the application reads.
    assert [expand(arg, environment) for arg in container["command"]] == SERVERS["uvicorn"].argv(
        host=EVERY_INTERFACE, port=8000, max_message_bytes=cap
    )
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]


def test_readiness_asks_readyz_and_liveness_healthz_on_the_worker_port():
    container = worker()

    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # /readyz waits up to 1 s for each of its checks (operations/readiness.py).
    assert container["readinessProbe"]["timeoutSeconds"] > 1


def test_the_grace_period_outlasts_the_prestop_sleep_the_drain_and_the_lifespan_shutdown():
    # SIGTERM comes after the preStop hook; uvicorn then waits up to GRACEFUL_SHUTDOWN_SECONDS
    # for the sockets it closed with 1001, and the lifespan shutdown records the sessions
    # closed within SHUTDOWN_BUDGET. The grace period counts from before the hook.
    sleep = worker()["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]

    assert sleep > 0
    assert grace > sleep + GRACEFUL_SHUTDOWN_SECONDS + SHUTDOWN_BUDGET


def test_a_rollout_or_a_drain_never_takes_more_than_one_worker_away():
    deployment = manifest("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert manifest("PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": labels},
    }
    service = manifest("Service")["spec"]
    assert (service["type"], service["selector"]) == ("ClusterIP", labels)
    assert [port["targetPort"] for port in service["ports"]] == ["http"]


def test_each_pod_is_scraped_on_the_worker_port():
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]

    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    # One worker per pod, each its own /metrics: no shared multiprocess directory.
    assert "PROMETHEUS_MULTIPROC_DIR" not in container_environment(worker())


def test_the_probes_and_scrapes_addressed_to_the_pod_ip_are_answered_by_django(tmp_path):
    # The settings module itself, in the worker's environment (test keys in place of the
    # placeholders, SQLite, the in-memory layer), asked what the kubelet and Prometheus ask.
    environment = {
        **container_environment(worker()),
        "DJANGO_SECRET_KEY": "s" * 50,
        "JWT_SIGNING_KEY": "j" * 50,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_STATIC_ROOT": str(tmp_path),
    }
    token = environment["METRICS_TOKEN"]
    script = (
        "import json, django; django.setup(); from django.test import Client\n"
        "client = Client()\n"
        f"host = '{POD_IP}:8000'\n"
        "print(json.dumps([\n"
        "    client.get('/healthz', HTTP_HOST=host).status_code,\n"
        f"    client.get('/metrics', HTTP_HOST=host, HTTP_AUTHORIZATION='Bearer {token}')"
        ".status_code,\n"
        "    client.get('/healthz', HTTP_HOST='10.9.9.9:8000').status_code,\n"
        "]))\n"
    )

    result = settings_run(script, environment)

    assert result.returncode == 0, result.stderr
    # Another pod's address is refused (400): the pod's own is admitted by its env entry.
    assert json.loads(result.stdout.splitlines()[-1]) == [200, 200, 400]


# ---------------------------------------------------------------------------
# The Jobs: migrations once per release, before the workers; pruning daily
# ---------------------------------------------------------------------------
def test_the_migrate_job_migrates_then_runs_the_deploy_checks_once():
    assert [c["command"] for c in containers("Job")] == [
        ["python", "manage.py", "migrate", "--noinput"],
        ["python", "manage.py", "check", "--deploy"],
    ]
    assert pod_spec("Job")["restartPolicy"] == "Never"


def test_the_registry_is_pruned_daily_one_run_at_a_time():
    cronjob = manifest("CronJob")["spec"]

    assert [c["command"] for c in containers("CronJob")] == [
        ["python", "manage.py", "prune_sessions"]
    ]
    assert cronjob["schedule"].split()[2:] == ["*", "*", "*"]
    assert cronjob["concurrencyPolicy"] == "Forbid"


def test_a_worker_starts_only_once_its_release_is_migrated():
    first, *_ = pod_spec("Deployment")["initContainers"]

    assert first["command"] == ["python", "manage.py", "migrate", "--check"]


# ---------------------------------------------------------------------------
# Settings: only variables that are read, secrets in the Secret, placeholders only
# ---------------------------------------------------------------------------
def test_every_configmap_secret_and_container_variable_is_one_the_service_reads():
    read = read_variables()
    configured = set(manifest("ConfigMap")["data"]) | set(manifest("Secret")["stringData"])
    assert sorted(configured - read) == []
    for container in all_containers():
        names = {variable["name"] for variable in container.get("env", [])}
        assert sorted(names - read - set(HELPER_VARIABLES)) == [], container["name"]


def test_every_secret_looking_variable_is_in_the_secret_not_the_configmap():
    secret = manifest("Secret")

    assert [key for key in manifest("ConfigMap")["data"] if SECRET_LOOKING.search(key)] == []
    assert sorted(key for key in secret["stringData"] if not SECRET_LOOKING.search(key)) == []
    assert {"DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "DATABASE_URL", "REDIS_URL"} <= set(
        secret["stringData"]
    )
    assert "data" not in secret  # no base64 value that a reader could mistake for a real one
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, key


def test_every_container_reads_the_configmap_and_the_secret():
    expected = [
        {"configMapRef": {"name": manifest("ConfigMap")["metadata"]["name"]}},
        {"secretRef": {"name": manifest("Secret")["metadata"]["name"]}},
    ]
    for container in all_containers():
        assert container["envFrom"] == expected, container["name"]
        assert container["workingDir"] == "/srv/switchboard", container["name"]


def test_a_worker_refuses_to_start_with_the_secrets_placeholders(tmp_path):
    environment = {
        **container_environment(worker()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
    }

    result = settings_run("import django; django.setup()", environment)

    assert result.returncode != 0
    assert "JWT_SIGNING_KEY (or DJANGO_SECRET_KEY, which it defaults to)" in result.stderr


def test_the_configmap_values_are_what_the_settings_accept():
    data = manifest("ConfigMap")["data"]
    parse = environ.Env.parse_value

    assert parse(data["DJANGO_DEBUG"], bool) is False
    assert "*" not in parse(data["DJANGO_ALLOWED_HOSTS"], list)
    assert parse(data["TRUSTED_PROXIES"], list) != []
    assert int(data["WS_MAX_MESSAGE_BYTES"]) > 0


# ---------------------------------------------------------------------------
# Unprivileged, on a read-only root, every write on a volume
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", POD_KINDS)
def test_every_container_runs_unprivileged_on_a_read_only_root(kind):
    spec = pod_spec(kind)

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False  # no variables but the ConfigMap's and Secret's
    for container in containers(kind):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, container["name"]
        assert set(container["resources"]) == {"requests", "limits"}, container["name"]


def test_what_the_service_writes_lands_on_a_volume_or_nowhere():
    data = manifest("ConfigMap")["data"]
    # settings.py makes the log files' folders in every process; they are /dev/null here.
    assert (data["LOG_FILE"], data["SECURITY_LOG_FILE"]) == ("/dev/null", "/dev/null")
    volumes = {volume["name"]: volume for volume in pod_spec("Deployment")["volumes"]}
    for container in containers("Deployment"):
        for mount in container.get("volumeMounts", []):
            assert "emptyDir" in volumes[mount["name"]], container["name"]
    # The worker reads what its collectstatic init container wrote there, on the same volume.
    (collect,) = [c for c in containers("Deployment") if c["name"] == "collectstatic"]
    assert collect["command"][:3] == ["python", "manage.py", "collectstatic"]
    assert static_mount(collect, data["DJANGO_STATIC_ROOT"]).get("readOnly") is not True
    served = static_mount(worker(), data["DJANGO_STATIC_ROOT"])
    assert (served["name"], served["readOnly"]) == (
        static_mount(collect, data["DJANGO_STATIC_ROOT"])["name"],
        True,
    )
