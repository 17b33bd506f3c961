"""Running the image the way deploy/kubernetes/deployment.yaml runs it, with the docker CLI."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.harness import REPO

DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"
# A cold build downloads torch for the builder stage (PyPI's CUDA build where PyTorch's CPU index is
# unreachable: about 3.5 GB) and installs it; CI allows 90 min.
BUILD_TIMEOUT_S = 60 * 60
LABEL = "classify-image-test"  # every container the tests start carries it: cleanup finds strays


def project_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def image_name() -> str:
    """The tag `make image` builds (and the manifests name)."""
    return f"classify-service:{project_version()}"


def torch_image_name() -> str:
    """The tag `make image-torch` builds."""
    return f"classify-service:{project_version()}-torch"


def torch_source(build_log: Path) -> str:
    """The index deploy/image/build.sh took torch from, as its log says."""
    found = re.search(r"^make image: building .*, torch from ([^\s,]+)", build_log.read_text(), re.MULTILINE)
    assert found, f"no torch source in {build_log}"
    return found.group(1)


def deployment_container() -> dict[str, Any]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def deployment_pod_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"])


def mebibytes(quantity: str) -> int:
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
    args = ["--cpus", str(limits["cpu"]), "--memory", f"{mebibytes(limits['memory'])}m"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    for mount in container["volumeMounts"]:
        size = empty_dirs[mount["name"]].get("sizeLimit")
        args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777" + (f",size={mebibytes(size)}m" if size else "")]
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


def make_image(log_path: Path, *make_args: str, target: str = "image", timeout: float) -> float:
    """Run `make image ARGS` (the command users run); its output goes to ``log_path``. Seconds taken."""
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(["make", "--no-print-directory", target, *make_args], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"make {target} {' '.join(make_args)} failed:\n{log_path.read_text()[-6000:]}")
    return time.monotonic() - started


# Run inside the image: what its bytes are (apparent sizes, as layers count them): top-level
# directories, the venv's distributions (their RECORD files), and which ML libraries import.
CONTENTS_SCRIPT = r"""
import importlib.metadata, importlib.util, json, os

def size(top):
    total = 0
    for root, dirs, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total

dists, seen = {}, set()
for dist in importlib.metadata.distributions():
    total = 0
    for file in dist.files or []:
        path = os.path.realpath(file.locate())
        if path not in seen and os.path.isfile(path):
            seen.add(path)
            total += os.path.getsize(path)
    dists[dist.metadata["Name"]] = total
print(json.dumps({
    "dirs": {top: size(top) for top in ("/usr", "/opt/venv", "/app", "/var", "/etc")},
    "dists": dists,
    "importable": [m for m in ("torch", "torchvision", "timm", "onnx", "pip") if importlib.util.find_spec(m)],
}))
"""


def compressed_bytes(docker: str, image: str) -> int:
    """``docker save IMAGE | gzip -6`` byte count: about what a registry stores and a node pulls."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = 0
    with subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        for chunk in iter(lambda: save.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
            total += len(compressor.compress(chunk))
    assert save.returncode == 0
    return total + len(compressor.flush())


def image_contents(docker: str, image: str) -> dict[str, Any]:
    """What the image's bytes are: sizes of top-level directories and of the venv's distributions."""
    probe = subprocess.run([docker, "run", "--rm", "--network", "none", "--label", LABEL, "--entrypoint", "python",
                            image, "-c", CONTENTS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    return dict(json.loads(probe.stdout))


def describe_contents(contents: dict[str, Any], shown: int = 8) -> str:
    """One line: the directories and the largest distributions, in MB."""
    megabytes = sorted(((name, size / 1e6) for name, size in contents["dists"].items()), key=lambda item: -item[1])
    listed = ", ".join(f"{name} {mb:.0f}" for name, mb in megabytes[:shown])
    rest = sum(mb for _, mb in megabytes[shown:])
    dirs = {name: size / 1e6 for name, size in contents["dirs"].items()}
    return (f"/usr {dirs['/usr']:.0f} (Debian base, Python 3.11), /opt/venv {dirs['/opt/venv']:.0f} ({listed}; "
            f"{len(megabytes) - shown} others {rest:.0f}), /app {dirs['/app']:.0f} (exported graphs), "
            f"/var {dirs['/var']:.0f}, /etc {dirs['/etc']:.0f}")


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
