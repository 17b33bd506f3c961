"""Running the image the way deploy/kubernetes/deployment.yaml runs it, with the docker CLI."""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.harness import REPO

DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"
# A cold build here downloads PyPI's CUDA torch (about 3.5 GB) and installs it; CI allows 90 min.
BUILD_TIMEOUT_S = 60 * 60
LABEL = "classify-image-test"  # every container the tests start carries it: cleanup finds strays


def project_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def image_name() -> str:
    """The tag `make image` builds (and the manifests name)."""
    return f"classify-service:{project_version()}"


def deployment_container() -> dict[str, Any]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def deployment_pod_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"])


def _mebibytes(quantity: str) -> int:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    raise ValueError(f"unsupported quantity {quantity!r}")


def deployment_run_args() -> list[str]:
    """`docker run` options equivalent to the Deployment's container: what Kubernetes would do.

    Read-only root with an emptyDir (a tmpfs here) of the same size at each mount, capabilities
    dropped, no privilege escalation, the CPU and memory limits, the env (resourceFieldRef of
    limits.cpu resolved as the downward API does with divisor 1), every container port published
    on a free loopback port. The user is the image's own USER (checked against runAsUser).
    """
    container = deployment_container()
    pod = deployment_pod_spec()
    security = container["securityContext"]
    limits = container["resources"]["limits"]
    args = ["--cpus", str(limits["cpu"]), "--memory", f"{_mebibytes(limits['memory'])}m"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    for mount in container["volumeMounts"]:
        size = empty_dirs[mount["name"]].get("sizeLimit")
        args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777" + (f",size={_mebibytes(size)}m" if size else "")]
    for variable in container["env"]:
        if "value" in variable:
            value = variable["value"]
        else:
            assert variable["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
            value = str(limits["cpu"])
        args += ["-e", f"{variable['name']}={value}"]
    for port in container["ports"]:
        args += ["-p", f"127.0.0.1::{port['containerPort']}"]
    return args


@dataclass
class Container:
    """A detached container started by the tests."""

    docker: str
    id: str
    started_at: float  # time.monotonic() just before `docker run`

    def _docker(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout, check=check)

    def inspect(self) -> dict[str, Any]:
        return dict(json.loads(self._docker("inspect", self.id).stdout)[0])

    def port(self, container_port: int) -> int:
        """The loopback port `docker run -p 127.0.0.1::PORT` published ``container_port`` on."""
        bindings = self.inspect()["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
        return int(bindings[0]["HostPort"])

    def logs(self) -> str:
        result = self._docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self, timeout: float = 300) -> float:
        """Wait for Docker's HEALTHCHECK to say healthy; seconds since `docker run`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if state["Health"]["Status"] == "healthy":
                return time.monotonic() - self.started_at
            if not state["Running"]:
                raise AssertionError(f"container exited ({state['ExitCode']}) before healthy:\n{self.logs()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"not healthy after {timeout} s: {self.inspect()['State']['Health']}\n{self.logs()[-4000:]}")

    def remove(self) -> None:
        self._docker("rm", "--force", "--volumes", self.id, check=False)


def run(docker: str, image: str, *options: str, command: tuple[str, ...] = ()) -> Container:
    """``docker run --detach`` with the Deployment's options, Docker's HEALTHCHECK polled every second.

    The image's HEALTHCHECK command is the one that runs; only its interval is shortened from
    15 s, so that "healthy" is seen within a second of the service being ready.
    """
    started_at = time.monotonic()
    result = subprocess.run(
        [docker, "run", "--detach", "--label", LABEL, "--health-interval", "1s",
         *deployment_run_args(), *options, image, *command],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"docker run failed:\n{result.stderr}"
    return Container(docker, result.stdout.strip(), started_at)


def remove_test_containers(docker: str) -> None:
    """Remove every container these tests started, including ones a killed run left behind."""
    listed = subprocess.run([docker, "ps", "--all", "--quiet", "--filter", f"label={LABEL}"],
                            capture_output=True, text=True, timeout=60)
    ids = listed.stdout.split()
    if ids:
        subprocess.run([docker, "rm", "--force", "--volumes", *ids], capture_output=True, timeout=120)


def make_image(log_path: Path, *make_args: str, timeout: float) -> float:
    """Run `make image ARGS` (the command users run); its output goes to ``log_path``. Seconds taken."""
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(["make", "--no-print-directory", "image", *make_args], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"make image {' '.join(make_args)} failed:\n{log_path.read_text()[-6000:]}")
    return time.monotonic() - started
