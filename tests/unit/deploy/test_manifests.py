"""Deployment files: Kubernetes manifests valid offline against the Kubernetes JSON schemas,
probes on gRPC health, resources set; a Dockerfile with a non-root USER and a HEALTHCHECK that
really asks a running server's grpc.health.v1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from bench.harness import REPO
from service.settings import Settings

KUBERNETES = REPO / "deploy" / "kubernetes"


KSERVE = REPO / "deploy" / "kserve" / "inferenceservice.yaml"
# 1.27: the first release with native gRPC probes GA; and the newest schemas bundled.
KUBERNETES_VERSIONS = ("1.27.0", latest_version())
GRPC_PORT: int = Settings.model_fields["grpc_port"].default  # the image keeps the default

Manifest = dict[str, Any]


def load_all(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[Path, Manifest]]:
    return [(path, doc) for path in sorted(KUBERNETES.glob("*.y*ml")) for doc in load_all(path)]


def the(kind: str, name: str | None = None) -> Manifest:
    found = [d for _, d in manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {KUBERNETES}, found {len(found)}"
    return found[0]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted during validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_offline(version: str, no_network: None) -> None:
    """Strict schemas (unknown fields are errors); an unknown kind raises SchemaNotFoundError."""
    found = manifests()
    assert found, f"no manifests in {KUBERNETES}"
    for path, doc in found:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = ".".join(str(p) for p in error.path)
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: "
                        f"{location}: {error.message}")
    kinds = sorted(doc["kind"] for _, doc in found)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Service"]


def container() -> Manifest:
    containers = the("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_probes_ask_grpc_health_on_the_grpc_port() -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports["grpc"] == GRPC_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container()[probe]
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, f"{probe} is not a gRPC probe"
        assert spec["grpc"]["port"] == ports["grpc"], f"{probe} does not ask the gRPC port"
        assert spec["grpc"].get("service", "") == "", f"{probe} asks a service other than the server's overall health"


def test_resources_are_requested_and_threads_follow_the_cpu_limit() -> None:
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]), "cpu and memory requests must be set"
    assert "memory" in resources["limits"], "a memory limit must be set"
    env = {e["name"]: e for e in container()["env"]}
    for name in ("CLASSIFY_TORCH_THREADS", "CLASSIFY_DECODE_WORKERS"):
        assert env[name]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert "cpu" in resources["limits"], "thread counts come from limits.cpu, so it must be set"


def test_services_autoscaler_and_budget_point_at_the_deployment() -> None:
    deployment = the("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name in ("classify", "classify-headless"):
        service = the("Service", name)
        assert service["spec"]["selector"].items() <= labels.items(), f"Service {name} selects no pod"
        assert "grpc" in {p["targetPort"] for p in service["spec"]["ports"]}
    headless = the("Service", "classify-headless")["spec"]
    assert headless["clusterIP"] == "None" and not headless.get("publishNotReadyAddresses", False)
    hpa = the("HorizontalPodAutoscaler")["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert hpa["scaleTargetRef"] == target
    pdb = the("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["minReplicas"] > pdb["maxUnavailable"], "a disruption could take every pod"


# -- Dockerfile: parsed by BuildKit's own parser (PyPI `dockerfile`): the fast offline checks;
# tests/e2e/image builds the image and runs it.
def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(REPO / "Dockerfile")))


def stages() -> dict[str, list[dockerfile.Command]]:
    """Each stage's instructions (its FROM first), by name, in the file's order."""
    found: dict[str, list[dockerfile.Command]] = {}
    for command in instructions():
        if command.cmd == "FROM":
            assert len(command.value) == 3 and command.value[1].upper() == "AS", f"unnamed stage: {command.original}"
            current = found.setdefault(command.value[2], [])
        if found:
            current.append(command)
    return found


def final_stage() -> list[dockerfile.Command]:
    """The stage a plain `docker build` (and `make image`) builds: the last one."""
    return list(stages().values())[-1]


def test_the_default_target_is_the_runtime_stage_without_torch() -> None:
    """The last stage (what `docker build` builds) starts from the base, not the torch builder, and
    installs only pyproject's base dependencies and the wheel; the graphs come from the export stage."""
    named = stages()
    assert list(named)[-1] == "runtime"
    runtime = named["runtime"]
    assert runtime[0].value[0] == "base"
    runs = " ".join(c.value[0] for c in runtime if c.cmd == "RUN")
    assert "torch" not in runs.lower() and "optional-dependencies" not in runs, runs
    assert "['project']['dependencies']" in runs
    copies = [(c.flags, c.value) for c in runtime if c.cmd == "COPY" and any(f.startswith("--from") for f in c.flags)]
    assert copies == [(("--from=export",), ("/graphs", "/app/graphs"))]
    assert named["export"][0].value[0] == "builder" and named["torch"][0].value[0] == "builder"


def test_the_torch_target_runs_like_the_runtime() -> None:
    """`--target torch` has the same user, ports, health check and entry point as the default image."""
    def serving(stage: list[dockerfile.Command]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        return [(c.cmd, c.flags, c.value) for c in stage if c.cmd in ("USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT")]

    named = stages()
    assert serving(named["torch"]) == serving(named["runtime"])
    assert len(serving(named["runtime"])) == 4


def test_dockerfile_runs_as_the_numeric_non_root_user_the_deployment_names() -> None:
    users = [c.value[0] for c in final_stage() if c.cmd == "USER"]
    assert users, "the final stage declares no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]!r} must be a numeric non-root uid (runAsNonRoot)"
    assert the("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def healthcheck_command() -> list[str]:
    checks = [c for c in final_stage() if c.cmd == "HEALTHCHECK"]
    assert len(checks) == 1, "the final stage needs one HEALTHCHECK"
    check = checks[0]
    assert check.json and check.value[0] == "CMD", "HEALTHCHECK CMD in exec form: no shell needed"
    return list(check.value[1:])


def run_healthcheck(grpc_port: int) -> int:
    argv = healthcheck_command()
    assert argv[0] == "python"  # the image's venv python, here this venv's
    env = {**os.environ, "CLASSIFY_GRPC_PORT": str(grpc_port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, timeout=30, capture_output=True).returncode


def test_dockerfile_installs_pyproject_torch_pins_from_the_cpu_index_by_default() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    pins = [d for d in extra if re.match(r"torch(vision)?==", d)]
    assert len(pins) == 2
    index_args = [c.value[0] for c in instructions() if c.cmd == "ARG" and c.value[0].startswith("TORCH_INDEX_URL=")]
    assert index_args == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"], "torch's default source is the CPU index"
    installs = [c.value[0] for c in instructions() if c.cmd == "RUN" and '--index-url "$TORCH_INDEX_URL"' in c.value[0]]
    assert len(installs) == 1, "torch must be installed from TORCH_INDEX_URL"
    for pin in pins:
        assert pin in installs[0].split(), f"the Dockerfile does not install {pin} (pyproject's pin)"


def test_dockerignore_lets_every_copied_path_in() -> None:
    allowed = {line[1:].strip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copies = [c.value for c in instructions() if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            path = source.strip("/")
            assert any(path == a or path.startswith(a + "/") for a in allowed), f"COPY {source}: excluded by .dockerignore"
            assert (REPO / source).exists(), f"COPY {source}: no such path"


def test_kserve_predictor_runs_the_same_image_and_resources() -> None:
    (service,) = load_all(KSERVE)
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    (predictor,) = service["spec"]["predictor"]["containers"]
    assert predictor["name"] == "kserve-container"
    assert predictor["image"] == container()["image"]
    assert predictor["resources"] == container()["resources"]
    env = {e["name"]: e.get("value") for e in predictor["env"]}
    cores = predictor["resources"]["limits"]["cpu"]
    assert env["CLASSIFY_TORCH_THREADS"] == env["CLASSIFY_DECODE_WORKERS"] == cores


def test_manifests_run_the_tag_make_image_builds() -> None:
    """`make image` tags classify-service:<pyproject version>; the Deployment and KServe run exactly it."""
    dry_run = subprocess.run(["make", "--no-print-directory", "-n", "image"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    built = re.search(r"IMAGE='([^']+)'", dry_run)
    assert built, dry_run
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert built.group(1) == f"classify-service:{version}"
    assert container()["image"] == built.group(1)
    (service,) = load_all(KSERVE)
    (predictor,) = service["spec"]["predictor"]["containers"]
    assert predictor["image"] == built.group(1)
    runtimes = [d for d in load_all(KSERVE.parent / "inferenceservice-v2-grpc.yaml") if d["kind"] == "ServingRuntime"]
    assert [c["image"] for r in runtimes for c in r["spec"]["containers"]] == [built.group(1)]


def test_kserve_predictor_runs_as_the_images_user_on_an_exposed_port() -> None:
    (service,) = load_all(KSERVE)
    (predictor,) = service["spec"]["predictor"]["containers"]
    users = [c.value[0] for c in final_stage() if c.cmd == "USER"]
    assert predictor["securityContext"]["runAsUser"] == int(users[-1].split(":")[0])
    assert {p["containerPort"] for p in predictor["ports"]} <= set(container_ports())


def container_ports() -> list[int]:
    exposed = [int(port) for c in final_stage() if c.cmd == "EXPOSE" for port in c.value]
    assert sorted(exposed) == sorted(p["containerPort"] for p in container()["ports"]), "EXPOSE != Deployment ports"
    return exposed


# -- the drain and the autoscaler: the same timings as the service and deploy/envoy

def _env(name: str) -> str:
    values = {e["name"]: e.get("value") for e in container()["env"]}
    assert values.get(name) is not None, f"the Deployment sets no {name}"
    return str(values[name])


def test_pod_drain_fits_the_probes_envoy_and_the_grace_period() -> None:
    """SIGTERM: NOT_SERVING, serving for the shutdown delay, then in-flight calls within the grace period, exit 0."""
    delay, grace = float(_env("CLASSIFY_SHUTDOWN_DELAY_S")), float(_env("CLASSIFY_GRACE_PERIOD_S"))
    pod = the("Deployment")["spec"]["template"]["spec"]
    # 10 s for the process's own exit and the kubelet's margin (the exit itself is about a second).
    assert delay + grace + 10 <= pod["terminationGracePeriodSeconds"]
    readiness, liveness = container()["readinessProbe"], container()["livenessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= delay, "readiness sees a drain too late"
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > delay + grace, "a drain would trip liveness"
    assert "lifecycle" not in container(), "the delay lives in the process: a preStop sleep would add to it"
    from service.tools.cluster.envoy_config import load_template

    for cluster in load_template()["static_resources"]["clusters"]:
        (check,) = cluster["health_checks"]
        assert float(check["interval"].rstrip("s")) + float(check["timeout"].rstrip("s")) <= delay, cluster["name"]
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert address["address"].startswith(the("Service", "classify-headless")["metadata"]["name"] + ".")
        assert address["port_value"] in {p["port"] for p in the("Service", "classify-headless")["spec"]["ports"]}


def test_autoscaler_scales_on_images_in_flight_per_pod_at_one_batch() -> None:
    from service.metrics import IN_FLIGHT

    metrics = the("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"], "one signal: images in flight (CPU is busy at any load)"
    pods = metrics[0]["pods"]
    assert pods["metric"]["name"] == IN_FLIGHT._name  # a metric the service exports
    assert pods["target"] == {"type": "AverageValue", "averageValue": str(Settings.model_fields["batch_max_size"].default)}
    annotations = the("Deployment")["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert annotations["prometheus.io/port"] == str(ports["http"]) and annotations["prometheus.io/path"] == "/metrics"
