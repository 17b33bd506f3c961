"""deploy/kserve/inferenceservice-v2-grpc.yaml: KServe's v2 protocol over gRPC, checked offline."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version

from bench.harness import REPO
from service.settings import Settings

MANIFEST = REPO / "deploy" / "kserve" / "inferenceservice-v2-grpc.yaml"
DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"
GRPC_PORT: int = Settings.model_fields["grpc_port"].default


def _documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def test_inference_service_uses_v2_over_grpc_on_the_runtime() -> None:
    docs = _documents()
    runtime, service = docs["ServingRuntime"], docs["InferenceService"]
    assert (runtime["apiVersion"], service["apiVersion"]) == ("serving.kserve.io/v1alpha1", "serving.kserve.io/v1beta1")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["runtime"] == runtime["metadata"]["name"]
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["ports"] == [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]


def test_runtime_container_is_a_valid_kubernetes_container_like_the_deployment() -> None:
    """Strict schema validation of the container (wrapped in a Pod), same image, user and gRPC probes."""
    (container,) = _documents()["ServingRuntime"]["spec"]["containers"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, latest_version(), strict=True)
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    pod_spec = deployment["spec"]["template"]["spec"]
    (reference,) = pod_spec["containers"]
    assert container["image"] == reference["image"]
    assert container["securityContext"]["runAsUser"] == pod_spec["securityContext"]["runAsUser"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == GRPC_PORT
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CLASSIFY_TORCH_THREADS"] == env["CLASSIFY_DECODE_WORKERS"] == container["resources"]["limits"]["cpu"]
