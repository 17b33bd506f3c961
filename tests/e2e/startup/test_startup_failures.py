"""Every start-up failure is one line: a table of bad settings and environments, run as real commands.

Each case runs the real `classify` (or `classify-client`) command in a subprocess and must exit
non-zero (never 134 / SIGABRT) with one line that names the setting and its value, no
traceback. Server commands log in JSON when stderr is a pipe (as here): every line must be one
JSON object, and exactly one of them an ERROR. The other commands print one plain line.
The cases run four at a time in one fixture; each is then checked by its own test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from bench.harness import REPO, free_port

# The cases run in one module fixture: its setup counts against the first test's timeout.
pytestmark = pytest.mark.timeout(900)
# The commands as modules of this checkout (the venv's `classify` script may belong to another one).
MODULES = {"classify": "service.cli", "classify-client": "classify_client.cli"}
PYTHONPATH = os.pathsep.join(str(REPO / p) for p in ("", "gen", "clients/python/src"))


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # fragments of the one line: the setting, its value, the advice
    env: dict[str, str] = field(default_factory=dict)
    json_logs: bool = True  # a server command (serve, gateway): JSON records
    hidden: str | None = None  # a secret that must not appear anywhere
    warning: str | None = None  # a warning line expected beside the error


@dataclass
class Outcome:
    returncode: int
    output: str


def _cases(files: dict[str, str], busy: int) -> list[Case]:
    serve = ("classify", "serve", "--host", "127.0.0.1", "--weights", files["weights"])
    ports = ("--grpc-port", "0", "--http-port", "0")
    gateway = ("classify", "gateway", "--host", "127.0.0.1", "--http-port", "0")
    image = files["image"]
    return [
        Case("queue-smaller-than-batch", (*serve, *ports, "--queue-size", "2"),
             ("--queue-size 2", "--batch-max-size 8", "raise --queue-size")),
        Case("batch-size-zero", (*serve, *ports, "--batch-max-size", "0"), ("--batch-max-size 0", "greater than")),
        Case("unknown-log-level", (*serve, *ports, "--log-level", "verbose"),
             ("--log-level verbose", "DEBUG, INFO, WARNING, ERROR, CRITICAL")),
        Case("port-out-of-range", (*serve, "--grpc-port", "70000", "--http-port", "0"), ("--grpc-port 70000", "65535")),
        Case("grpc-port-in-use", (*serve, "--grpc-port", str(busy), "--http-port", "0"),
             (f"--grpc-port {busy}", "already in use", "--grpc-port 0")),
        Case("http-port-in-use", (*serve, "--grpc-port", "0", "--http-port", str(busy)),
             (f"--http-port {busy}", "already in use")),
        Case("same-port-twice", (*serve, "--grpc-port", "8123", "--http-port", "8123"),
             ("--grpc-port and --http-port are both 8123",)),
        Case("host-not-an-address", (*serve, *ports, "--host", "999.1.1.1"), ("--host 999.1.1.1", "0.0.0.0")),
        Case("host-not-on-this-machine", (*serve, *ports, "--host", "192.0.2.1"),  # TEST-NET-1: only bound, never sent to
             ("--host 192.0.2.1", "not an address of this machine")),
        Case("backend-unknown", (*serve, *ports, "--backend", "tensorrt"), ("--backend tensorrt", "must be one of")),
        Case("request-bytes-too-small", (*serve, *ports, "--max-request-bytes", "10"), ("--max-request-bytes 10",)),
        Case("labels-missing", (*serve, *ports, "--labels", "/nonexistent/labels.txt"),
             ("--labels /nonexistent/labels.txt", "cannot be read")),
        Case("token-file-is-a-directory", (*serve, *ports, "--auth-token-file", files["dir"]),
             (f"--auth-token-file {files['dir']}", "cannot be read")),
        Case("tls-cert-without-key", (*serve, *ports, "--tls-cert-file", files["cert"]),
             ("--tls-cert-file", "without --tls-key-file")),
        Case("tls-key-without-cert", (*serve, *ports, "--tls-key-file", files["key"]),
             ("--tls-key-file", "without --tls-cert-file")),
        Case("tls-mismatched-pair", (*serve, *ports, "--tls-cert-file", files["cert"], "--tls-key-file", files["other_key"]),
             ("--tls-cert-file", "--tls-key-file", "matching pair")),
        Case("tls-client-ca-alone", (*serve, *ports, "--tls-client-ca-file", files["ca"]),
             ("--tls-client-ca-file", "--tls-cert-file")),
        Case("tls-client-ca-not-pem", (*serve, *ports, "--tls-cert-file", files["cert"], "--tls-key-file", files["key"],
                                       "--tls-client-ca-file", files["not_pem"]),
             ("--tls-client-ca-file", "not a PEM")),
        Case("control-without-repository", (*serve, *ports, "--model-control", "explicit"),
             ("--model-control explicit", "--model-repository")),
        Case("poll-interval-without-poll", (*serve, *ports, "--repository-poll-s", "5"),
             ("--repository-poll-s 5", "--model-control")),
        Case("repository-missing", (*serve, *ports, "--model-repository", "/nonexistent/models"),
             ("--model-repository /nonexistent/models", "not a directory")),
        Case("weights-missing", ("classify", "serve", "--host", "127.0.0.1", *ports, "--weights", "/nonexistent/w.pth"),
             ("/nonexistent/w.pth",)),
        Case("weights-sha256-not-hex", (*serve, *ports, "--weights-sha256", "xyz"), ("--weights-sha256 xyz", "64 hex")),
        Case("tokens-as-a-flag", (*serve, *ports, "--auth-tokens", '["x"]'),
             ("--auth-tokens is not a flag", "CLASSIFY_AUTH_TOKENS", "--auth-token-file"), hidden='["x"]'),
        Case("model-env-not-json", (*serve, *ports), ("CLASSIFY_MODEL resnet18", "JSON list"),
             env={"CLASSIFY_MODEL": "resnet18"}),
        Case("queue-env-not-a-number", (*serve, *ports), ("CLASSIFY_QUEUE_SIZE abc", "integer"),
             env={"CLASSIFY_QUEUE_SIZE": "abc"}),
        Case("tokens-env-not-json", (*serve, *ports), ("CLASSIFY_AUTH_TOKENS", "JSON list"),
             env={"CLASSIFY_AUTH_TOKENS": "s3cret-token"}, hidden="s3cret-token"),
        Case("misspelled-variable-warns", (*serve, *ports, "--host", "999.1.1.1"), ("--host 999.1.1.1",),
             env={"CLASSIFY_QUEUE_SIZ": "4"}, warning="CLASSIFY_QUEUE_SIZ is not a setting and is ignored (did you mean CLASSIFY_QUEUE_SIZE?)"),
        Case("gateway-without-upstream", gateway, ("--grpc-upstream",)),
        Case("gateway-upstream-not-host-port", (*gateway, "--grpc-upstream", "nohost"),
             ("--grpc-upstream nohost", "HOST:PORT")),
        Case("gateway-port-in-use", ("classify", "gateway", "--host", "127.0.0.1", "--http-port", str(busy),
                                     "--grpc-upstream", "127.0.0.1:1"), (f"--http-port {busy}", "already in use")),
        Case("gateway-log-level", (*gateway, "--grpc-upstream", "127.0.0.1:1", "--log-level", "loud"), ("--log-level loud",)),
        Case("gateway-tls-key-alone", (*gateway, "--grpc-upstream", "127.0.0.1:1", "--tls-key-file", files["key"]),
             ("--tls-key-file",)),
        Case("predict-root-ca-missing", ("classify", "predict", image, "--root-ca", "/nonexistent/ca.pem"),
             ("--root-ca /nonexistent/ca.pem", "cannot be read"), json_logs=False),
        Case("predict-token-file-missing", ("classify", "predict", image, "--token-file", "/nonexistent/token"),
             ("--token-file /nonexistent/token",), json_logs=False),
        Case("predict-client-cert-alone", ("classify", "predict", image, "--client-cert", files["cert"]),
             ("--client-cert and --client-key",), json_logs=False),
        Case("client-predict-root-ca-missing", ("classify-client", "predict", image, "--root-ca", "/nonexistent/ca.pem"),
             ("--root-ca /nonexistent/ca.pem",), json_logs=False),
        Case("models-root-ca-missing", ("classify", "models", "list", "--root-ca", "/nonexistent/ca.pem"),
             ("--root-ca /nonexistent/ca.pem",), json_logs=False),
        Case("models-token-file-missing", ("classify", "models", "load", "m", "--token-file", "/nonexistent/token"),
             ("--token-file /nonexistent/token",), json_logs=False),
        Case("weights-add-file-missing", ("classify", "weights", "add", "/nonexistent/w.pth", "--repository", files["dir"],
                                          "--name", "m", "--architecture", "resnet18"),
             ("/nonexistent/w.pth",), json_logs=False),
        Case("weights-fetch-unreachable", ("classify", "weights", "fetch", "resnet18", "--dir", files["dir"],
                                           "--url", "http://127.0.0.1:9/resnet18.pth", "--timeout", "2"),
             ("http://127.0.0.1:9/resnet18.pth",), json_logs=False),
        Case("bench-bad-concurrency", ("classify", "bench", "--concurrency", "0", "--out", files["dir"] + "/b"),
             ("--concurrency",), json_logs=False),
        Case("bench-queue-smaller-than-batch", ("classify", "bench", "--queue-size", "1", "--out", files["dir"] + "/b"),
             ("--queue-size 1", "--batch-max-size"), json_logs=False),
        Case("quantize-log-level", ("classify", "quantize", "resnet18", "--calibration", files["dir"], "--log-level", "x"),
             ("--log-level x",)),
    ]


def _run(case: Case, scratch: Path) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFY_")}
    env.update(case.env, PYTHONUNBUFFERED="1", PYTHONPATH=PYTHONPATH)
    command = [sys.executable, "-m", MODULES[case.argv[0]], *case.argv[1:]]
    try:
        result = subprocess.run(command, cwd=scratch, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=60)
    except subprocess.TimeoutExpired as expired:  # it started instead of refusing
        return Outcome(0, f"still running after 60 s: {expired.stdout!r} {expired.stderr!r}")
    return Outcome(result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Case], dict[str, Outcome]]]:
    from bench.harness import random_resnet18_weights

    scratch = tmp_path_factory.mktemp("startup")
    ca = trustme.CA()
    leaf, other = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    files = {"dir": str(scratch / "dir"), "weights": str(random_resnet18_weights(scratch)),
             "cert": str(scratch / "cert.pem"), "key": str(scratch / "key.pem"), "other_key": str(scratch / "other.pem"),
             "ca": str(scratch / "ca.pem"), "not_pem": str(scratch / "not.pem"), "image": str(scratch / "cat.png")}
    (scratch / "dir").mkdir()
    leaf.cert_chain_pems[0].write_to_path(files["cert"])
    leaf.private_key_pem.write_to_path(files["key"])
    other.private_key_pem.write_to_path(files["other_key"])
    ca.cert_pem.write_to_path(files["ca"])
    Path(files["not_pem"]).write_text("not a certificate\n")
    Path(files["image"]).write_bytes(b"\x89PNG")
    with socket.socket() as holder:  # a port another process holds, on the address the servers use
        holder.bind(("127.0.0.1", free_port()))
        holder.listen()
        cases = {case.id: case for case in _cases(files, holder.getsockname()[1])}
        with ThreadPoolExecutor(4) as pool:
            futures = {name: pool.submit(_run, case, scratch) for name, case in cases.items()}
            results = {name: future.result() for name, future in futures.items()}
    yield cases, results


@pytest.mark.parametrize("case_id", [case.id for case in _cases({k: "" for k in (
    "dir", "weights", "cert", "key", "other_key", "ca", "not_pem", "image")}, 0)])
def test_a_bad_setting_is_one_line(case_id: str, outcomes: tuple[dict[str, Case], dict[str, Outcome]]) -> None:
    """Non-zero exit (no abort), no traceback, one error line naming the setting, its value and what to do."""
    cases, results = outcomes
    case, outcome = cases[case_id], results[case_id]
    shown = f"exit {outcome.returncode}, output:\n{outcome.output}"
    assert outcome.returncode not in (0, 134, -6), shown
    assert "Traceback" not in outcome.output and "terminate called" not in outcome.output, shown
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    if case.json_logs:
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        errors = [r["message"] for r in records if r["level"] in ("ERROR", "CRITICAL")]
        assert len(errors) == 1, shown
        error = errors[0]
        assert "\n" not in error, shown
        if case.warning is not None:
            assert any(r["level"] == "WARNING" and case.warning in r["message"] for r in records), shown
    else:
        assert len(lines) == 1, shown
        error = lines[0]
    for fragment in case.expect:
        assert fragment in error, f"{fragment!r} missing from the error line; {shown}"
    if case.hidden is not None:
        assert case.hidden not in outcome.output, shown


def test_the_table_covers_every_command() -> None:
    """serve, gateway and each client and tool subcommand have at least one case."""
    argvs = [case.argv for case in _cases({k: "" for k in (
        "dir", "weights", "cert", "key", "other_key", "ca", "not_pem", "image")}, 0)]
    covered = {" ".join(argv[:2]) for argv in argvs} | {" ".join(argv[:3]) for argv in argvs}
    for command in ("classify serve", "classify gateway", "classify predict", "classify models list",
                    "classify models load", "classify weights add", "classify weights fetch", "classify bench",
                    "classify quantize", "classify-client predict"):
        assert command in covered, command
    assert REPO.exists()
