"""The peer comparison's logic (bench/peer_compare.py) and the load generator's peer mode, without the peers.

BentoML and Ray Serve themselves live in venvs that `python -m bench.peer_compare` makes;
they are never installed or started by the test suite.
"""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from bench import peer_compare
from bench.peer_compare import PEERS, Peer, Target, median_targets, readme_table, render, round_orders, targets
from service.tools.bench.cli import parse_peer, plan


def _run(target: str, mode: str, concurrency: int, throughput: float, p50: float, p99: float) -> dict:
    return {"target": target, "mode": mode, "concurrency": concurrency, "throughput": throughput,
            "p50_ms": p50, "p99_ms": p99, "errors": {}}


def _round(ours: float, bento: float, ray: float, our_p99: float = 300.0, their_p99: float = 600.0) -> list[dict]:
    return [
        _run("service", "http-multipart", 16, ours, 300, our_p99), _run("service", "grpc-unary", 16, ours * 1.05, 290, our_p99),
        _run("service", "http-multipart", 1, 30, 34, 40), _run("service", "grpc-unary", 1, 32, 32, 38),
        _run("in-process", "pipeline", 1, 33, 30, 35), _run("in-process", "pipeline", 16, ours * 1.1, 280, 290),
        _run("in-process", "model-b8", 1, 60, 130, 140),
        _run("bentoml", "peer-multipart", 16, bento, 400, their_p99), _run("bentoml", "peer-multipart", 1, 5, 200, 220),
        _run("rayserve", "peer-multipart", 16, ray, 450, their_p99 * 1.2), _run("rayserve", "peer-multipart", 1, 20, 48, 60),
    ]


def test_rounds_alternate_the_order_of_the_servers() -> None:
    """Round 1 as given, round 2 reversed, and so on: drift over a round hits every server alike."""
    assert round_orders(["service", "bentoml", "rayserve"], 3) == [
        ["service", "bentoml", "rayserve"], ["rayserve", "bentoml", "service"], ["service", "bentoml", "rayserve"]]


def test_targets_are_ratios_against_the_better_peer_within_a_round() -> None:
    """Throughput and p99 against the peer with the higher c16 throughput; c1 p50 against the in-process pipeline."""
    found = {t.name: t for t in targets(peer_compare.index(_round(ours=60, bento=30, ray=40)), ["bentoml", "rayserve"])}
    http = found["c16 throughput: ours over HTTP multipart / the better peer's (HTTP)"]
    assert (http.value, http.against, http.met) == (pytest.approx(1.5), "rayserve", True)
    p99 = found["c16 p99: ours over gRPC unary / the better peer's (HTTP)"]
    assert p99.value == pytest.approx(300 / 720) and p99.met
    c1 = found["c1 p50: ours over gRPC unary / in-process pipeline"]
    assert c1.value == pytest.approx(32 / 30) and c1.met
    assert not found["c1 p50: ours over HTTP multipart / in-process pipeline"].met  # 34 / 30 > 1.1
    slower = {t.name: t for t in targets(peer_compare.index(_round(ours=50, bento=40, ray=20)), ["bentoml", "rayserve"])}
    assert slower["c16 throughput: ours over HTTP multipart / the better peer's (HTTP)"].against == "bentoml"
    assert not slower["c16 throughput: ours over HTTP multipart / the better peer's (HTTP)"].met  # 1.25


def test_the_median_of_the_rounds_decides_and_the_report_shows_every_round() -> None:
    """Three rounds at 1.4, 1.6, 1.7: median 1.6, met; the report lists each round's ratio and the load."""
    rounds = [{"order": ["service"], "runs": _round(ours=o, bento=30, ray=40),
               "load": {"service": {"before": "1.00 0.50 0.20", "after": "2.00 1.00 0.40"}}} for o in (56, 64, 68)]
    per_round = [targets(peer_compare.index(r["runs"]), ["bentoml", "rayserve"]) for r in rounds]
    median = median_targets(per_round)[0]
    assert median.value == pytest.approx(1.6) and median.met and median.against == "rayserve"
    meta = {"name": "t", "rounds": 3, "duration_s": 8, "warmup_s": 2, "started": "now", "cpus": 2,
            "weights": "w.pth", "service_backend": "onnxruntime"}
    report = render(meta, rounds, per_round, ["bentoml", "rayserve"])
    assert "| 1.40 (rayserve) | 1.60 (rayserve) | 1.70 (rayserve) | 1.60 | met |" in report
    assert "shared" in report and "service: 1.00 0.50 0.20 -> 2.00 1.00 0.40" in report
    summary = {"rounds": rounds, "median": [{**t.__dict__, "met": t.met} for t in median_targets(per_round)]}
    table = readme_table(json.loads(json.dumps(summary)))
    assert "| Ray Serve | HTTP multipart | 40.0 |" in table and "| classify serve | gRPC unary | 67.2 |" in table


def test_a_target_knows_its_direction() -> None:
    assert Target("x", ">= 1.5", 1.5).met and not Target("x", ">= 1.5", 1.49).met
    assert Target("x", "<= 0.7", 0.7).met and not Target("x", "<= 0.7", 0.71).met


def test_venv_is_remade_when_its_requirements_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp of the requirements' SHA-256 marks a venv current; an edit makes it stale."""
    monkeypatch.setattr(peer_compare, "VENVS", tmp_path / "venvs")
    monkeypatch.setattr(peer_compare, "PEERS_DIR", tmp_path)
    peer = Peer("p", lambda python, port: [], "")
    peer.requirements.write_text("pillow\n")
    assert not peer_compare.venv_is_current(peer)
    (peer.venv / "bin").mkdir(parents=True)
    (peer.venv / "bin" / "python").write_text("")
    (peer.venv / ".requirements-sha256").write_text(peer_compare.requirements_digest(peer.requirements))
    assert peer_compare.venv_is_current(peer)
    peer.requirements.write_text("pillow\nnumpy\n")
    assert not peer_compare.venv_is_current(peer)


def test_peer_requirements_pin_the_frameworks_and_the_local_torch() -> None:
    """Each peer's venv pins its framework and the torch/torchvision on this machine's disk; never .venv."""
    for name, pin in (("bentoml", "bentoml=="), ("rayserve", "ray[serve]==")):
        text = PEERS[name].requirements.read_text()
        assert pin in text and "torch==2.14.1" in text and "torchvision==0.29.1" in text
        assert PEERS[name].venv.parent.name == ".venvs"


def test_bench_plans_peer_runs_only_against_peers() -> None:
    """--peer NAME=URL adds NAME as a target of peer-multipart; --only-peers leaves our server out."""
    args = Namespace(modes="http-multipart,peer-multipart", grpc="127.0.0.1:1", http="http://127.0.0.1:2",
                     tutorial_grpc=None, tutorial_http=None, peer=["bentoml=http://127.0.0.1:3"], only_peers=False)
    assert [(p.target, p.mode) for p in plan(args)] == [("service", "http-multipart"), ("bentoml", "peer-multipart")]
    args.only_peers = True
    assert [(p.target, p.address) for p in plan(args)] == [("bentoml", "http://127.0.0.1:3")]
    with pytest.raises(ValueError, match="NAME=URL"):
        parse_peer("service=http://127.0.0.1:3")
