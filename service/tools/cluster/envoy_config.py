"""Rendering deploy/envoy/envoy.yaml (written for Kubernetes) for replicas on this machine."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "deploy" / "envoy" / "envoy.yaml"
# Cluster name in the template -> which port of a replica it reaches.
CLUSTER_PORTS = {"classify_grpc": "grpc", "classify_http": "http"}
LISTENER_PORTS = {"grpc": "grpc", "http": "http"}


@dataclass(frozen=True)
class Endpoint:
    """One replica's two ports on ``host``."""

    host: str
    grpc: int
    http: int


class TemplateError(Exception):
    """The Envoy template cannot be read."""


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    try:
        import yaml  # PyYAML: installed with the dev extra (and by timm); never imported by serving
    except ImportError:
        raise TemplateError("reading deploy/envoy/envoy.yaml needs PyYAML: pip install pyyaml") from None

    with path.open(encoding="utf-8") as file:
        loaded: dict[str, Any] = yaml.safe_load(file)
    return loaded


def render(
    template: dict[str, Any],
    replicas: Sequence[Endpoint],
    *,
    listen_host: str,
    grpc_port: int,
    http_port: int,
    admin_port: int,
    access_log: Path,
) -> dict[str, Any]:
    """The template with static endpoints, these listener and admin ports, and the access log in a file.

    Everything else (health checks, outlier detection, retries, timeouts) is the
    template's, so what runs here is what deploy/envoy describes.
    """
    if not replicas:
        raise ValueError("a cluster needs at least one replica")
    config = copy.deepcopy(template)
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    ports = {"grpc": grpc_port, "http": http_port}
    listeners = config["static_resources"]["listeners"]
    if sorted(listener["name"] for listener in listeners) != sorted(LISTENER_PORTS):
        raise ValueError(f"the template's listeners must be {sorted(LISTENER_PORTS)}")
    for listener in listeners:
        listener["address"]["socket_address"] = {"address": listen_host, "port_value": ports[listener["name"]]}
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                for logger in network_filter["typed_config"].get("access_log", []):
                    _to_file(logger, access_log)
    clusters = config["static_resources"]["clusters"]
    if sorted(cluster["name"] for cluster in clusters) != sorted(CLUSTER_PORTS):
        raise ValueError(f"the template's clusters must be {sorted(CLUSTER_PORTS)}")
    for cluster in clusters:
        # DNS discovery (the headless Service) becomes a fixed list: this machine's replicas.
        cluster.pop("cluster_type", None)
        cluster["type"] = "STATIC"
        port = CLUSTER_PORTS[cluster["name"]]
        cluster["load_assignment"] = {
            "cluster_name": cluster["name"],
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": replica.host, "port_value": getattr(replica, port),
                }}}}
                for replica in replicas
            ]}],
        }
    return config


def _to_file(logger: dict[str, Any], path: Path) -> None:
    """A stdout access logger becomes a file logger with the same format."""
    typed = logger["typed_config"]
    if not typed["@type"].endswith("StdoutAccessLog"):
        return
    logger["name"] = "envoy.access_loggers.file"
    logger["typed_config"] = {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": str(path),
        **({"log_format": typed["log_format"]} if "log_format" in typed else {}),
    }
