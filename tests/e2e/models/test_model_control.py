"""Models change while the server runs: rollouts and unloads under load on both transports, with no failed request."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from bench.harness import REPO, ServerProcess, random_resnet18_weights, skimage_photo, start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from service.core.repository import MODEL_FILE, write_model_file
from service.core.weights import sha256_file
from service.tools.weights_store import place_in_repository

TOKEN, ADMIN = "classify-token-for-tests", "admin-token-for-tests"
USER_AUTH, ADMIN_AUTH = (("authorization", f"Bearer {TOKEN}"),), (("authorization", f"Bearer {ADMIN}"),)
ARTIFACTS = REPO / "test-artifacts"


@dataclass
class Repo:
    """A model repository on disk and a pool of distinct random ResNet18 weights to put in it."""

    root: Path
    weights_dir: Path
    made: dict[tuple[int, int], Path] = field(default_factory=dict)

    def weights(self, seed: int, num_classes: int = 1000) -> Path:
        if (seed, num_classes) not in self.made:
            self.made[seed, num_classes] = random_resnet18_weights(self.weights_dir, seed, num_classes)
        return self.made[seed, num_classes]

    def add(self, name: str, version: int, seed: int, num_classes: int = 1000, labels: Path | None = None) -> Path:
        return place_in_repository(
            self.weights(seed, num_classes), self.root, name, architecture="resnet18", version=version, labels=labels
        )

    def add_by_hand(self, name: str, version: int, seed: int, labels: Path) -> Path:
        """A version copied into place without `classify weights add` (which would refuse a bad one)."""
        weights, staging = self.weights(seed), self.root / name / f".tmp-{version}"
        staging.mkdir(parents=True)
        shutil.copyfile(weights, staging / weights.name)
        shutil.copyfile(labels, staging / labels.name)
        write_model_file(
            staging / MODEL_FILE,
            {"architecture": "resnet18", "weights": weights.name, "sha256": sha256_file(weights), "labels": labels.name},
        )
        return staging.rename(self.root / name / str(version))


def _start(repo: Repo, directory: Path, *extra: str) -> ServerProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokens").write_text(TOKEN + "\n")
    (directory / "admin").write_text(ADMIN + "\n")
    return start_server(
        repo.weights(0), directory, "--model-repository", str(repo.root),
        "--auth-token-file", str(directory / "tokens"), "--admin-token-file", str(directory / "admin"),
        "--batch-max-size", "4", *extra,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repository = Repo(tmp_path_factory.mktemp("repository"), tmp_path_factory.mktemp("versions"))
    repository.add("roll", 1, seed=11)
    repository.add("drop", 1, seed=12)
    return repository


@pytest.fixture(scope="module")
def explicit_server(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = _start(repo, tmp_path_factory.mktemp("explicit"), "--model-control", "explicit")
    yield running
    assert running.stop() == 0


def _grpc_stub(server: ServerProcess) -> tuple[grpc.Channel, pb_grpc.ClassifierServiceStub]:
    channel = grpc.insecure_channel(server.grpc_address)
    return channel, pb_grpc.ClassifierServiceStub(channel)


def _listing(server: ServerProcess, name: str) -> dict[str, str]:
    """version -> state of model ``name`` as GET /v1/models shows it."""
    models = httpx.get(f"{server.http_url}/v1/models", headers=dict(USER_AUTH), timeout=10).json()["models"]
    return {v["version"]: v["state"].removeprefix("STATE_") for m in models if m["name"] == name for v in m["versions"]}


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _rss_mib(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# -- traffic ---------------------------------------------------------------

Outcome = tuple[str, str]  # ("ok", version) or (error code, message)


class Traffic:
    """Clients on both transports calling Classify for model ``name`` in a loop, each recording its outcomes."""

    def __init__(self, server: ServerProcess, name: str, image: bytes, per_transport: int = 2, max_calls: int = 3000) -> None:
        self.stop = threading.Event()
        self.outcomes: dict[str, list[Outcome]] = {}
        self._closers: list[Callable[[], None]] = []
        body = {"image": base64.b64encode(image).decode(), "model": name, "topK": 1}
        request = pb.ClassifyRequest(image=image, model=name, top_k=1)
        self._threads = []
        for index in range(per_transport):
            self._spawn(f"grpc-{index}", self._grpc_calls(server, request), max_calls)
            self._spawn(f"http-{index}", self._http_calls(server, body), max_calls)

    def _spawn(self, client: str, call: Callable[[], Outcome], max_calls: int) -> None:
        outcomes = self.outcomes.setdefault(client, [])

        def run() -> None:
            while not self.stop.is_set() and len(outcomes) < max_calls:
                outcomes.append(call())

        thread = threading.Thread(target=run, name=client, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _grpc_calls(self, server: ServerProcess, request: pb.ClassifyRequest) -> Callable[[], Outcome]:
        channel, stub = _grpc_stub(server)
        self._closers.append(channel.close)

        def call() -> Outcome:
            try:
                return "ok", stub.Classify(request, metadata=USER_AUTH, timeout=30).model_version
            except grpc.RpcError as error:
                return error.code().name, error.details() or ""

        return call

    def _http_calls(self, server: ServerProcess, body: dict[str, object]) -> Callable[[], Outcome]:
        http = httpx.Client(base_url=server.http_url, headers=dict(USER_AUTH), timeout=30)
        self._closers.append(http.close)

        def call() -> Outcome:
            try:
                response = http.post("/v1/classify", json=body)
            except httpx.HTTPError as error:
                return "transport", repr(error)
            if response.status_code != 200:
                return str(response.status_code), response.text
            return "ok", response.json()["modelVersion"]

        return call

    def finish(self) -> dict[str, list[Outcome]]:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)
        for close in self._closers:
            close()
        return self.outcomes

    def served(self) -> int:
        return sum(1 for outcomes in self.outcomes.values() for kind, _ in outcomes if kind == "ok")


def _load_http(server: ServerProcess, name: str, version: str = "", auth: tuple[tuple[str, str], ...] = ADMIN_AUTH) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v1/models/{name}:load", json={"version": version}, headers=dict(auth), timeout=120)


def _pause_until(started: float, at: float, traffic: Traffic) -> None:
    time.sleep(max(0.0, started + at - time.monotonic()))
    assert traffic.served() > 0


# -- the rollout -----------------------------------------------------------


def test_rollout_under_load_fails_no_request(explicit_server: ServerProcess, repo: Repo, tmp_path: Path) -> None:
    """Versions 1 -> 2 -> 3 (and a bad 4) roll while clients on gRPC and HTTP call: none fails, none goes back."""
    server = explicit_server
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    repo.add("roll", 2, seed=21)
    repo.add("roll", 3, seed=31)
    channel, stub = _grpc_stub(server)
    traffic = Traffic(server, "roll", skimage_photo("coffee.png"))
    started = time.monotonic()
    swaps: list[tuple[str, float]] = []
    try:
        _pause_until(started, 3, traffic)
        t = time.monotonic()
        loaded = _load_http(server, "roll", "2")
        swaps.append(("1 -> 2 (HTTP)", time.monotonic() - t))
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["model"]["version"] == "2"

        _pause_until(started, 7, traffic)
        t = time.monotonic()
        reply = stub.LoadModel(pb.LoadModelRequest(name="roll", version="3"), metadata=ADMIN_AUTH, timeout=120)
        swaps.append(("2 -> 3 (gRPC)", time.monotonic() - t))
        assert reply.model.version == "3"

        _pause_until(started, 11, traffic)
        repo.add_by_hand("roll", 4, seed=41, labels=labels)  # 1000 classes, 3 labels: must fail
        failed = _load_http(server, "roll", "4")
        assert failed.status_code == 400 and failed.json()["code"] == 9, failed.text
        assert "the weights have 1000 classes but" in failed.json()["message"]
        assert "set key 'labels' of its model.toml" in failed.json()["message"]
        assert _listing(server, "roll")["4"] == "FAILED"

        _pause_until(started, 20, traffic)
    finally:
        outcomes = traffic.finish()

    failures = [(client, o) for client, results in outcomes.items() for o in results if o[0] != "ok"]
    assert not failures, failures[:5]
    seen: set[str] = set()
    for client, results in outcomes.items():
        versions = [int(version) for _, version in results]
        assert versions == sorted(versions), f"{client} saw versions go backwards"
        seen |= {str(v) for v in versions}
    assert seen == {"1", "2", "3"}, seen
    listing = _listing(server, "roll")
    assert listing == {"1": "READY", "2": "READY", "3": "READY", "4": "FAILED"}

    # Memory comes back: unload versions 1 and 2 and measure the server's resident set.
    rss_before = _rss_mib(server)
    for version in ("1", "2"):
        stub.UnloadModel(pb.UnloadModelRequest(name="roll", version=version), metadata=ADMIN_AUTH, timeout=30)
    released = {"1": "UNLOADED", "2": "UNLOADED", "3": "READY", "4": "FAILED"}  # still listed: they can be loaded again
    _wait(lambda: _listing(server, "roll") == released, 30, "versions 1 and 2 to be released")
    time.sleep(1.0)  # the release thread trims the heap after the batchers stop
    rss_after = _rss_mib(server)
    channel.close()

    served = sum(len(results) for results in outcomes.values())
    by_transport = {t: sum(len(r) for c, r in outcomes.items() if c.startswith(t)) for t in ("grpc", "http")}
    report = (
        f"rollout under load: {served} requests in {time.monotonic() - started:.0f} s "
        f"(gRPC {by_transport['grpc']}, HTTP {by_transport['http']}), failed: {len(failures)}; "
        f"versions answered: {', '.join(sorted(seen))}; bad version 4 FAILED, version 3 kept serving\n"
        + "".join(f"load {what}: {seconds:.2f} s (verify, load, warm up, publish)\n" for what, seconds in swaps)
        + f"server RSS before unloading versions 1 and 2: {rss_before:.0f} MiB, after: {rss_after:.0f} MiB "
        f"({rss_before - rss_after:+.0f} MiB returned)\n"
    )
    print("\n" + report)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "model-swap.txt").write_text(report)
    # Two ResNet18 weight sets are about 2 x 45 MiB; most of it must come back.
    assert rss_before - rss_after > 40, report


def test_pinned_version_answers_and_unknown_pin_is_not_found(explicit_server: ServerProcess, repo: Repo) -> None:
    """model_version pins the version; a version that is not ready is NOT_FOUND / 404."""
    repo.add("pin", 1, seed=51)
    repo.add("pin", 2, seed=52)
    assert _load_http(explicit_server, "pin").status_code == 200
    channel, stub = _grpc_stub(explicit_server)
    with channel:
        image = skimage_photo("chelsea.png")
        assert stub.Classify(pb.ClassifyRequest(image=image, model="pin"), metadata=USER_AUTH, timeout=30).model_version == "2"
        pinned = stub.Classify(pb.ClassifyRequest(image=image, model="pin", model_version="1"), metadata=USER_AUTH, timeout=30)
        assert pinned.model_version == "1"
        with pytest.raises(grpc.RpcError) as error:
            stub.Classify(pb.ClassifyRequest(image=image, model="pin", model_version="7"), metadata=USER_AUTH, timeout=30)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND and "no ready version '7'" in (error.value.details() or "")
    body = {"image": base64.b64encode(image).decode(), "model": "pin", "modelVersion": "1"}
    answer = httpx.post(f"{explicit_server.http_url}/v1/classify", json=body, headers=dict(USER_AUTH), timeout=30)
    assert answer.status_code == 200 and answer.json()["modelVersion"] == "1"
    metrics = httpx.get(f"{explicit_server.http_url}/metrics", headers=dict(USER_AUTH), timeout=10).text
    assert 'classify_model_version_requests_total{model="pin",version="1"} 2.0' in metrics
    assert 'classify_model_loads_total{model="pin",outcome="ready"} 2.0' in metrics
    assert 'classify_model_versions_loaded{model="pin"} 2.0' in metrics
    assert 'classify_model_load_seconds_count{model="pin"} 2.0' in metrics


def test_unload_under_load_finishes_in_flight_then_not_found(explicit_server: ServerProcess) -> None:
    """Unloading while clients call: every call before succeeds, every call after is NOT_FOUND / 404, nothing else."""
    assert explicit_server.health("models/drop") == health_pb2.HealthCheckResponse.SERVING
    traffic = Traffic(explicit_server, "drop", skimage_photo("coffee.png"))
    try:
        _wait(lambda: traffic.served() >= 20, 60, "traffic on model drop")
        channel, stub = _grpc_stub(explicit_server)
        with channel:
            reply = stub.UnloadModel(pb.UnloadModelRequest(name="drop"), metadata=ADMIN_AUTH, timeout=30)
        assert list(reply.model.versions) == [] or all(
            v.state == pb.ModelVersionStatus.STATE_UNLOADING for v in reply.model.versions
        )
        time.sleep(2)
    finally:
        outcomes = traffic.finish()
    for client, results in outcomes.items():
        kinds = [kind for kind, _ in results]
        gone = "NOT_FOUND" if client.startswith("grpc") else "404"
        first_gone = kinds.index(gone)  # every client saw the unload
        assert set(kinds[:first_gone]) == {"ok"} and set(kinds[first_gone:]) == {gone}, (client, sorted(set(kinds)))
        assert "'drop'" in results[first_gone][1]
    # Released, and still listed: the version is in the repository, to be loaded again.
    _wait(lambda: _listing(explicit_server, "drop") == {"1": "UNLOADED"}, 30, "model drop to be released")
    assert explicit_server.health("models/drop") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert httpx.get(f"{explicit_server.http_url}/readyz", params={"model": "drop"}, timeout=10).status_code == 404


BAD_VERSIONS = {
    "bad model.toml": (lambda folder: (folder / "model.toml").write_text(f'architecture = "resnet18"\nweights = 3\nsha256 = "{"0" * 64}"\n'), "key 'weights' must be a string"),
    "hash mismatch": (lambda folder: next(folder.glob("*.pth")).open("ab").write(b"!"), "key 'sha256' is"),
    "unknown key": (lambda folder: (folder / "model.toml").open("a").write('layers = "18"\n'), "unknown key 'layers'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VERSIONS))
def test_bad_version_fails_clearly_and_the_current_one_keeps_serving(
    case: str, explicit_server: ServerProcess, repo: Repo
) -> None:
    """A broken version is FAILED with the reason (naming the file and key); the model's current version serves."""
    name = "bad-" + case.replace(" ", "-").replace(".", "")
    repo.add(name, 1, seed=61)
    assert _load_http(explicit_server, name).status_code == 200
    tamper, message = BAD_VERSIONS[case]
    folder = repo.add(name, 2, seed=62)
    tamper(folder)
    channel, stub = _grpc_stub(explicit_server)
    with channel:
        with pytest.raises(grpc.RpcError) as error:
            stub.LoadModel(pb.LoadModelRequest(name=name), metadata=ADMIN_AUTH, timeout=120)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = error.value.details() or ""
        assert f"model {name} version 2 failed to load" in details and message in details
        assert str(folder) in details
        info = stub.GetModel(pb.GetModelRequest(name=name), metadata=USER_AUTH, timeout=10).model
        assert info.version == "1"
        (failed,) = [v for v in info.versions if v.version == "2"]
        assert failed.state == pb.ModelVersionStatus.STATE_FAILED and message in failed.reason
        reply = stub.Classify(pb.ClassifyRequest(image=skimage_photo("coffee.png"), model=name), metadata=USER_AUTH, timeout=30)
        assert reply.model_version == "1"


def test_control_calls_need_the_admin_token(explicit_server: ServerProcess) -> None:
    """No token: UNAUTHENTICATED / 401; a classify-only token: PERMISSION_DENIED / 403; on both transports."""
    channel, stub = _grpc_stub(explicit_server)
    with channel:
        calls: list[tuple[Callable[..., object], object]] = [
            (stub.LoadModel, pb.LoadModelRequest(name="roll")), (stub.UnloadModel, pb.UnloadModelRequest(name="roll")),
        ]
        for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED), (USER_AUTH, grpc.StatusCode.PERMISSION_DENIED)):
            for call, request in calls:
                with pytest.raises(grpc.RpcError) as error:
                    call(request, metadata=metadata, timeout=10)
                assert error.value.code() == code
        # The classify token still lists models; health stays open.
        assert stub.ListModels(pb.ListModelsRequest(), metadata=USER_AUTH, timeout=10).models
    for path in ("/v1/models/roll:load", "/v1/models/roll:unload"):
        assert httpx.post(explicit_server.http_url + path, json={}, timeout=10).status_code == 401
        denied = httpx.post(explicit_server.http_url + path, json={}, headers=dict(USER_AUTH), timeout=10)
        assert denied.status_code == 403 and denied.json()["code"] == 7 and "admin token" in denied.json()["message"]
    assert "roll" in {m["name"] for m in httpx.get(f"{explicit_server.http_url}/v1/models", headers=dict(USER_AUTH)).json()["models"]}


def test_models_command_loads_lists_and_unloads(explicit_server: ServerProcess, repo: Repo, tmp_path: Path) -> None:
    """`classify weights add` places a version; `classify models load|list|unload` drive the server."""
    weights = repo.weights(71)
    added = _classify("weights", "add", str(weights), "--repository", str(repo.root), "--name", "cli", "--architecture", "resnet18")
    assert added.returncode == 0 and added.stdout.strip().endswith("version 1 of model cli"), added.stderr
    token = tmp_path / "admin"
    token.write_text(ADMIN + "\n")
    common = ("--server", explicit_server.grpc_address, "--token-file", str(token))
    loaded = _classify("models", "load", "cli", *common)
    assert loaded.returncode == 0, loaded.stderr
    assert any(line.split()[:3] == ["cli", "1", "READY"] and "(current)" in line for line in loaded.stdout.splitlines())
    listing = _classify("models", "list", "--transport", "http", "--http", explicit_server.http_url, "--token-file", str(token))
    assert listing.returncode == 0 and any(line.split()[:2] == ["cli", "1"] for line in listing.stdout.splitlines())
    refused = _classify("models", "unload", "cli", "--server", explicit_server.grpc_address)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    unloaded = _classify("models", "unload", "cli", *common)
    assert unloaded.returncode == 0, unloaded.stderr
    _wait(lambda: _listing(explicit_server, "cli") == {"1": "UNLOADED"}, 30, "model cli to be released")
    relisted = _classify("models", "list", *common)
    assert any(line.split()[:3] == ["cli", "1", "UNLOADED"] for line in relisted.stdout.splitlines()), relisted.stdout
    missing = _classify("models", "load", "nothing-here", *common)
    assert missing.returncode == 1 and "NOT_FOUND: model 'nothing-here' is not in the model repository" in missing.stderr


def _classify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=180)


# -- poll and none ---------------------------------------------------------


def test_poll_picks_up_a_dropped_version_and_drops_a_removed_one(tmp_path: Path) -> None:
    """--model-control poll: a version folder renamed into place is loaded, a removed one unloaded; calls are refused."""
    repository = Repo(tmp_path / "repository", tmp_path / "weights")
    repository.weights_dir.mkdir()
    repository.add("watched", 1, seed=81)
    server = _start(repository, tmp_path / "server", "--model-control", "poll", "--repository-poll-s", "0.5")
    try:
        channel, stub = _grpc_stub(server)
        with channel:
            def current() -> str:
                return stub.GetModel(pb.GetModelRequest(name="watched"), metadata=USER_AUTH, timeout=10).model.version

            assert current() == "1"
            repository.add("watched", 2, seed=82)
            _wait(lambda: current() == "2", 30, "the poll to load version 2")
            reply = stub.Classify(pb.ClassifyRequest(image=skimage_photo("coffee.png"), model="watched"), metadata=USER_AUTH, timeout=30)
            assert reply.model_version == "2"
            shutil.rmtree(repository.root / "watched" / "1")
            _wait(lambda: set(_listing(server, "watched")) == {"2"}, 30, "the poll to unload version 1")
            with pytest.raises(grpc.RpcError) as error:
                stub.LoadModel(pb.LoadModelRequest(name="watched"), metadata=ADMIN_AUTH, timeout=10)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "--model-control poll" in (error.value.details() or "")
    finally:
        assert server.stop() == 0


def test_serve_with_a_broken_repository_and_control_none_stops_with_the_reason(tmp_path: Path) -> None:
    """With --model-control none a version that cannot load is a start-up error naming the file and the key."""
    repository = Repo(tmp_path / "repository", tmp_path / "weights")
    repository.weights_dir.mkdir()
    folder = repository.add("broken", 1, seed=91)
    (folder / "model.toml").write_text((folder / "model.toml").read_text().replace("architecture", "arch"))
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0",
         "--model-repository", str(repository.root), "--log-format", "text"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 2
    assert f"{folder / 'model.toml'}: unknown key 'arch'" in result.stderr and "Traceback" not in result.stderr


def test_control_is_refused_with_model_control_none(server: ServerProcess) -> None:
    """The default server (no repository, control none) answers control calls FAILED_PRECONDITION / 400."""
    answer = httpx.post(f"{server.http_url}/v1/models/resnet18:load", json={}, timeout=10)
    assert answer.status_code == 400 and "--model-repository" in answer.json()["message"]
    with grpc.insecure_channel(server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            pb_grpc.ClassifierServiceStub(channel).UnloadModel(pb.UnloadModelRequest(name="resnet18"), timeout=10)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
