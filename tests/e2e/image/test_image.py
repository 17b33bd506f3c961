"""The slim image (`make image`: no torch), built and run as deploy/kubernetes runs it.

Read-only root with a tmpfs at /tmp, the image's own numeric user, the Deployment's limits,
ports published on loopback; Docker's HEALTHCHECK must turn healthy with no arguments (the
bundled model's graph, exported by the builder stage), real photos are classified over gRPC and
HTTP from the host, memory is measured under load, `docker stop` must drain in-flight calls and
exit 0. The BAKE_RESNET18 build path, exported graphs on a read-only volume, and .pth weights
without their graph (one clear line) run too. tests/e2e/image/test_torch_image.py: the torch target.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import functools
import hashlib
import http.server
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from bench import containers
from bench.containers import BUILD_TIMEOUT_S, Container, deployment_container, deployment_pod_spec
from bench.harness import REPO
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from service.core.onnx_backend import graph_path
from tests.e2e.image.figures import ARTIFACTS, record

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 900)  # the first test's setup may build from scratch

GRPC_PORT, HTTP_PORT = 50051, 8000
# ImageNet classes that are right for the photos (as tests/e2e/models/test_pretrained_accuracy.py).
RIGHT_CLASSES = {"chelsea.png": {281, 282, 285}, "coffee.png": {967, 968}}
DRAIN_GRACE_S = 20


def _docker(docker: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def service(docker: str, image: str) -> Iterator[Container]:
    """The image as the Deployment runs it: no command, its env; healthy.

    Only the drain's grace period is longer than the Deployment's (still under its
    terminationGracePeriodSeconds), so that a busy shared machine cannot make it run out.
    """
    container = containers.run(docker, image, "-e", f"CLASSIFY_GRACE_PERIOD_S={DRAIN_GRACE_S}")
    try:
        seconds = container.wait_healthy()
        record("cold start", f"{seconds:.1f} s from `docker run` to Docker's HEALTHCHECK healthy "
               "(checked every 1 s; the image's own interval is 15 s), bundled efficientnet_lite0")
        yield container
    finally:
        container.remove()


def _stub(container: Container) -> pb_grpc.ClassifierServiceStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{container.port(GRPC_PORT)}")
    return pb_grpc.ClassifierServiceStub(channel)


def _http(container: Container) -> str:
    return f"http://127.0.0.1:{container.port(HTTP_PORT)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


IMAGE_LIMIT_BYTES = 500_000_000  # issue #19's target for the slim image


def test_image_size_and_what_it_holds(docker: str, image: str) -> None:
    """Under 500 MB, no torch (nor pip) inside; no build secret, pip configuration or build tree left in it."""
    size = int(_docker(docker, "image", "inspect", "--format", "{{.Size}}", image).stdout)
    contents = containers.image_contents(docker, image)
    assert contents["importable"] == [], f"the slim image holds {contents['importable']}"
    record("image size", f"{image}: {size / 1e6:.0f} MB ({size} bytes; `docker save | gzip`: "
           f"{containers.compressed_bytes(docker, image) / 1e6:.0f} MB), no torch")
    record("image contents (MB)", containers.describe_contents(contents))
    assert size <= IMAGE_LIMIT_BYTES, f"{image} is {size / 1e6:.0f} MB, over {IMAGE_LIMIT_BYTES / 1e6:.0f} MB"
    leftovers = _docker(docker, "run", "--rm", "--network", "none", "--label", containers.LABEL, "--entrypoint", "sh",
                        image, "-c", "find /run/secrets /src /wheels /root/.cache /tmp -mindepth 1 2>/dev/null; "
                        "find / -xdev -name pip.conf 2>/dev/null")
    assert leftovers.stdout.strip() == "", f"left in the image:\n{leftovers.stdout}"


def test_runs_read_only_as_the_manifests_non_root_user(service: Container) -> None:
    """The process is the image's numeric USER, the one the manifests name; only /tmp is writable."""
    security = deployment_pod_spec()["securityContext"]
    uid, gid = security["runAsUser"], security["runAsGroup"]
    details = service.inspect()
    assert details["Config"]["User"] == f"{uid}:{gid}"
    assert details["HostConfig"]["ReadonlyRootfs"] is True
    status = Path(f"/proc/{details['State']['Pid']}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))}
    assert ids == {"Uid": [str(uid)] * 4, "Gid": [str(gid)] * 4}, f"PID 1 runs as {ids}"
    assert _docker(service.docker, "exec", service.id, "touch", "/app/x").returncode != 0, "the root is writable"
    assert _docker(service.docker, "exec", service.id, "touch", "/tmp/x").returncode == 0, "/tmp is not writable"
    # A preStop hook the Deployment names (it has none since the drain keeps serving on its own) must exist here.
    prestop = deployment_container().get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if prestop:
        assert _docker(service.docker, "exec", service.id, "sh", "-c", f"command -v {prestop[0]}").returncode == 0, \
            f"no {prestop[0]} for preStop"


def test_classifies_real_photos_over_grpc_and_http(service: Container, photos: dict[str, bytes]) -> None:
    """The bundled pretrained model names the cat and the espresso, the same way on both transports."""
    stub = _stub(service)
    for name, right in RIGHT_CLASSES.items():
        grpc_answer = stub.Classify(pb.ClassifyRequest(image=photos[name], top_k=5), timeout=60)
        http_answer = httpx.post(f"{_http(service)}/v1/classify", json={"image": _b64(photos[name]), "topK": 5},
                                 timeout=60)
        assert http_answer.status_code == 200, http_answer.text
        grpc_classes = [p.class_index for p in grpc_answer.predictions]
        http_classes = [p.get("classIndex", 0) for p in http_answer.json()["predictions"]]
        assert grpc_classes == http_classes
        assert right & set(grpc_classes), f"{name}: top 5 {grpc_classes} misses {right}"
        assert grpc_answer.model == http_answer.json()["model"] == "efficientnet_lite0"
    model = stub.GetModel(pb.GetModelRequest(name="efficientnet_lite0"), timeout=30).model
    assert (model.backend, model.precision) == ("onnxruntime", "fp32")


def test_kserve_http_probes_answer(service: Container) -> None:
    """The InferenceService's probes (HTTP on the serving port) pass on the running image."""
    predictor = yaml.safe_load((REPO / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    (spec,) = predictor["spec"]["predictor"]["containers"]
    assert [p["containerPort"] for p in spec["ports"]] == [HTTP_PORT]
    for probe in ("readinessProbe", "livenessProbe"):
        response = httpx.get(_http(service) + spec[probe]["httpGet"]["path"], timeout=10)
        assert response.status_code == 200, f"{probe}: {response.status_code} {response.text}"


def test_memory_under_load(service: Container, photos: dict[str, bytes]) -> None:
    """RSS of `classify serve` (PID 1) idle and while 16 clients send real photos over gRPC.

    Read from /proc/PID/status on the host every 50 ms; the load runs in the Deployment's limits
    (2 CPUs). The figure the manifests' memory request must cover.
    """
    pid = service.inspect()["State"]["Pid"]
    idle, _ = containers.rss_mib(pid)
    names = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
    concurrency, per_client = 16, 10
    done = threading.Event()
    samples: list[float] = []

    def sample() -> None:
        while not done.is_set():
            samples.append(containers.rss_mib(pid)[0])
            time.sleep(0.05)

    def client(index: int) -> None:
        stub = _stub(service)
        for i in range(per_client):
            answer = stub.Classify(pb.ClassifyRequest(image=photos[names[(index + i) % len(names)]], top_k=5), timeout=120)
            assert len(answer.predictions) == 5

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(client, i) for i in range(concurrency)]:
                future.result()
    finally:
        done.set()
        sampler.join()
    seconds = time.monotonic() - started
    after, peak = containers.rss_mib(pid)
    request = deployment_container()["resources"]["requests"]["memory"]
    record("RSS under load", f"`classify serve` (efficientnet_lite0, onnxruntime) idle {idle:.0f} MiB; "
           f"{concurrency * per_client} gRPC Classify calls at concurrency {concurrency} on real photos: "
           f"sampled max {max(samples):.0f} MiB, VmHWM {peak:.0f} MiB, after {after:.0f} MiB "
           f"({concurrency * per_client / seconds:.1f} img/s under --cpus 2; the Deployment requests {request})")
    assert peak < containers.mebibytes(request), f"peak RSS {peak:.0f} MiB is over the Deployment's request {request}"


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


def _interface_ipv4(name: str) -> str:
    """The IPv4 address of a network interface (SIOCGIFADDR), e.g. docker0's 172.17.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


@pytest.fixture
def bridge_file_server(docker: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on Docker's bridge gateway, which build containers reach."""
    bridge = _docker(docker, "network", "inspect", "bridge", "--format",
                     '{{index .Options "com.docker.network.bridge.name"}}')
    assert bridge.returncode == 0, bridge.stderr
    address = _interface_ipv4(bridge.stdout.strip())
    directory = tmp_path / "served"
    directory.mkdir()
    server = http.server.ThreadingHTTPServer((address, 0), functools.partial(_QuietFiles, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield directory, f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_baked_resnet18_is_served(docker: str, image: str, weights: Path, photos: dict[str, bytes],
                                  bridge_file_server: tuple[Path, str]) -> None:
    """BAKE_RESNET18=1: the builder fetches (and verifies) the file and exports it; the slim image serves its graph.

    A ResNet18 other than the official one (RESNET18_SHA256) is served once its digest is named
    (CLASSIFY_WEIGHTS_SHA256); the official file's is pinned, so that image needs no setting.
    """
    directory, url = bridge_file_server
    shutil.copy(weights, directory / weights.name)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    baked = f"{image}-resnet18-test"
    seconds = containers.make_image(
        ARTIFACTS / "image-build-baked.log", "BAKE_RESNET18=1", f"IMAGE={baked}",
        f"RESNET18_URL={url}/{weights.name}", f"RESNET18_SHA256={digest}", timeout=BUILD_TIMEOUT_S)
    record("make image BAKE_RESNET18=1", f"{seconds:.0f} s (after the plain image, whose layers it reuses)")
    container = containers.run(docker, baked, "-e", f"CLASSIFY_WEIGHTS_SHA256={digest}")
    try:
        seconds = container.wait_healthy()
        record("cold start, BAKE_RESNET18=1", f"{seconds:.1f} s from `docker run` to healthy, ResNet18 graph")
        stub = _stub(container)
        listed = stub.ListModels(pb.ListModelsRequest(), timeout=30)
        assert [(m.name, m.weights_sha256, m.backend) for m in listed.models] == [("resnet18", digest, "onnxruntime")]
        answer = stub.Classify(pb.ClassifyRequest(image=photos["rocket.jpg"], top_k=3), timeout=60)
        assert (answer.model, answer.model_version) == ("resnet18", digest[:12])
        graphs = _docker(docker, "exec", container.id, "ls", "/app/graphs").stdout.split()
        assert graph_path(Path("/app/graphs"), "resnet18", digest, "fp32").name in graphs, graphs
        assert "is absent: serving the graph exported from it" in container.logs()
    finally:
        container.remove()
        _docker(docker, "rmi", baked)


def _export_out(weights: Path, out: Path) -> None:
    """`classify export resnet18 --weights W --out DIR` on the host (it has torch): DIR/resnet18.{onnx,json}."""
    exported = subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "resnet18", "--weights", str(weights), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert exported.returncode == 0, exported.stderr


def test_exported_graphs_on_a_read_only_volume_are_served(
    docker: str, image: str, weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """The slim image's volume contract: a read-only volume of `classify export ... --out` output, --model PATH.onnx.

    The graph and its manifest are all it needs (no weights file, no torch); nothing is written.
    """
    volume = tmp_path / "models"
    volume.mkdir()
    _export_out(weights, volume)
    volume.chmod(0o755)
    before = sorted(p.name for p in volume.iterdir())
    assert before == ["resnet18.json", "resnet18.onnx"]
    container = containers.run(docker, image, "-v", f"{volume}:/models:ro",
                               command=("--model", "/models/resnet18.onnx"))
    try:
        container.wait_healthy()
        stub = _stub(container)
        answer = stub.Classify(pb.ClassifyRequest(image=photos["chelsea.png"], top_k=3), timeout=60)
        assert answer.model == "resnet18" and len(answer.predictions) == 3
        model = stub.GetModel(pb.GetModelRequest(name="resnet18"), timeout=30).model
        assert model.backend == "onnxruntime"
        assert model.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert sorted(p.name for p in volume.iterdir()) == before, "something was written to the volume"
    finally:
        container.remove()


def test_weights_without_their_graph_fail_in_one_line(docker: str, image: str, weights: Path, tmp_path: Path) -> None:
    """A .pth mounted into the slim image has no torch to export it: the start fails naming the remedy."""
    volume = tmp_path / "weights"
    volume.mkdir()
    shutil.copy(weights, volume / weights.name)
    volume.chmod(0o755)
    container = containers.run(docker, image, "-v", f"{volume}:/app/weights:ro",
                               "-e", f"CLASSIFY_WEIGHTS=/app/weights/{weights.name}")
    try:
        deadline = time.monotonic() + 120
        while container.inspect()["State"]["Running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        state = container.inspect()["State"]
        assert not state["Running"] and state["ExitCode"] != 0, state
        logs = container.logs()
        assert "Traceback" not in logs, logs[-3000:]
        assert "needs torch" in logs and "classify export" in logs, logs[-3000:]
    finally:
        container.remove()


def test_docker_stop_drains_in_flight_calls_and_exits_0(service: Container, photos: dict[str, bytes]) -> None:
    """SIGTERM to PID 1 while batches run on both transports: admitted calls complete, exit 0, no SIGKILL.

    `docker stop` gets the Deployment's terminationGracePeriodSeconds, as the kubelet would
    (plain `docker stop` waits 10 s: the image's CLASSIFY_GRACE_PERIOD_S is 5). The calls are
    admitted before SIGTERM, so all must complete; one that reached the server only after the
    shutdown delay would be refused by the transport (UNAVAILABLE / connection refused), never
    cut off. The drain must have had work to do.
    """
    grace_s = deployment_pod_spec()["terminationGracePeriodSeconds"]
    assert DRAIN_GRACE_S < grace_s
    photo_names = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
    # 4 calls of 12 images: about a second of work on an idle 2-core machine, so SIGTERM lands
    # while most of it is still to do; several times that on a busy one, inside the grace period.
    size = 12
    batch = [photos[photo_names[i % len(photo_names)]] for i in range(size)]
    warm_up = pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=data) for data in batch[:8]])
    _stub(service).ClassifyBatch(warm_up, timeout=60)  # first batches of each size are slower
    finished: dict[str, tuple[float, Any]] = {}
    go = threading.Barrier(5)

    def over_grpc(key: str) -> None:
        request = pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=data) for data in batch])
        stub = _stub(service)
        go.wait()
        try:
            response = stub.ClassifyBatch(request, timeout=90)
            finished[key] = (time.monotonic(), response)
        except grpc.RpcError as error:
            finished[key] = (time.monotonic(), error)

    def over_http(key: str) -> None:
        body = json.dumps({"requests": [{"image": _b64(data)} for data in batch]})
        go.wait()
        try:
            answer = httpx.post(f"{_http(service)}/v1/classify:batch", content=body,
                                headers={"content-type": "application/json"}, timeout=90)
            finished[key] = (time.monotonic(), answer)
        except httpx.HTTPError as error:
            finished[key] = (time.monotonic(), error)

    calls = [threading.Thread(target=over_grpc, args=(f"grpc-{i}",)) for i in range(2)]
    calls += [threading.Thread(target=over_http, args=(f"http-{i}",)) for i in range(2)]
    for call in calls:
        call.start()
    go.wait()
    time.sleep(0.2)  # the four calls are sent and admitted
    stop_sent = time.monotonic()
    stopped = subprocess.run([service.docker, "stop", "--time", str(grace_s), service.id],
                             capture_output=True, text=True, timeout=grace_s + 60)
    stop_seconds = time.monotonic() - stop_sent
    for call in calls:
        call.join(60)
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(finished) == ["grpc-0", "grpc-1", "http-0", "http-1"]
    drained = refused = 0
    for key, (at, outcome) in finished.items():
        if isinstance(outcome, grpc.RpcError) and outcome.code() == grpc.StatusCode.UNAVAILABLE:
            refused += 1
            continue
        if isinstance(outcome, httpx.Response) and outcome.status_code == 503:
            refused += 1
            continue
        if key.startswith("grpc"):
            assert isinstance(outcome, pb.ClassifyBatchResponse), f"{key}: {outcome}"
            assert [r.WhichOneof("result") for r in outcome.results] == ["response"] * size, outcome
        else:
            assert isinstance(outcome, httpx.Response) and outcome.status_code == 200, f"{key}: {outcome}"
            assert ["response" in r for r in outcome.json()["results"]] == [True] * size, outcome.text
        drained += at > stop_sent
    # The service's own account: how many admitted images it waited for, and whether all finished.
    report = re.search(r"drained (\d+) in-flight images( \(grace period ran out\))?", service.logs())
    assert report, f"no drain in the log:\n{service.logs()[-3000:]}"
    assert int(report.group(1)) > 0, f"nothing was in flight at SIGTERM ({refused} calls refused)"
    assert report.group(2) is None, "the grace period ran out before the in-flight calls finished"
    state = service.inspect()["State"]
    assert (state["Running"], state["ExitCode"], state["OOMKilled"]) == (False, 0, False), state
    assert stop_seconds < grace_s, f"docker stop took {stop_seconds:.1f} s: the container was killed"
    record("docker stop", f"{stop_seconds:.1f} s (--time {grace_s}), exit code 0; {report.group(1)} images in flight "
           f"at SIGTERM all finished; of 4 batch calls of {size} images, {drained} completed after SIGTERM, "
           f"{refused} refused with UNAVAILABLE/503")
