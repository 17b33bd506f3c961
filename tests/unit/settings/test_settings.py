"""The settings object refuses what cannot work, in one line naming the settings involved."""

from __future__ import annotations

import argparse

import pytest

from service.settings import Settings, SettingsProblem, settings_from_args, unknown_environment


def _problem(monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None, **flags: object) -> str:
    for name in [n for n in __import__("os").environ if n.startswith("CLASSIFY_")]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsProblem) as refused:
        settings_from_args(argparse.Namespace(command="serve", **flags))
    assert "\n" not in str(refused.value)
    return str(refused.value)


@pytest.mark.parametrize(("flags", "fragments"), [
    ({"queue_size": "2"}, ("--queue-size 2", "--batch-max-size 8")),
    ({"repository_poll_s": "5"}, ("--repository-poll-s 5", "--model-control is none")),
    ({"model_control": "poll"}, ("--model-control poll", "--model-repository")),
    ({"grpc_port": "9000", "http_port": "9000"}, ("--grpc-port and --http-port are both 9000",)),
    ({"log_level": "verbose"}, ("--log-level verbose", "DEBUG, INFO")),
    ({"weights_sha256": "abc"}, ("--weights-sha256 abc", "64 hex")),
    ({"grpc_upstream": "no-port"}, ("--grpc-upstream no-port", "HOST:PORT")),
])
def test_contradictions_and_bad_values_name_the_settings(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, str], fragments: tuple[str, ...]
) -> None:
    message = _problem(monkeypatch, **flags)
    for fragment in fragments:
        assert fragment in message


def test_environment_lists_must_be_json_and_secrets_stay_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CLASSIFY_MODEL resnet18: must be a JSON list" in _problem(monkeypatch, {"CLASSIFY_MODEL": "resnet18"})
    message = _problem(monkeypatch, {"CLASSIFY_AUTH_TOKENS": "hunter2"})
    assert "CLASSIFY_AUTH_TOKENS" in message and "hunter2" not in message


def test_tokens_are_refused_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _problem(monkeypatch, _env_only_auth_tokens='["x"]')
    assert "--auth-tokens is not a flag" in message and "CLASSIFY_AUTH_TOKENS" in message


def test_a_log_level_in_any_case_is_accepted() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"  # type: ignore[arg-type]


def test_misspelled_variables_warn_and_kubernetes_links_do_not() -> None:
    warnings = unknown_environment({
        "CLASSIFY_QUEUE_SIZ": "4", "CLASSIFY_SERVICE_HOST": "10.0.0.1", "CLASSIFY_PORT_8000_TCP": "tcp://x",
        "CLASSIFY_HEADLESS_SERVICE_PORT_GRPC": "50051", "CLASSIFY_TOKEN": "t", "CLASSIFY_QUEUE_SIZE": "8",
    })
    assert warnings == ["environment variable CLASSIFY_QUEUE_SIZ is not a setting and is ignored "
                        "(did you mean CLASSIFY_QUEUE_SIZE?)"]
