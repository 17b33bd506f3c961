"""schemathesis against /openapi.json: no 5xx, and every response conforms to its schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bench.harness import ServerProcess

# schemathesis' pytest plugin (from_fixture) does not run under pytest 9 yet; its
# hypothesis strategies are driven directly instead, one operation at a time.
OPERATIONS = [
    ("POST", "/v1/classify"), ("POST", "/v1/classify:upload"), ("POST", "/v1/classify:batch"),
    ("GET", "/v1/models"), ("GET", "/v1/models/{name}"),
    ("POST", "/v1/models/{name}:load"), ("POST", "/v1/models/{name}:unload"),
    ("POST", "/predict/file"), ("POST", "/predict/b64"), ("GET", "/healthz"), ("GET", "/readyz"),
    # The Open Inference Protocol's REST API (http_gateway/oip_routes.py).
    ("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2/models/stats"),
    ("POST", "/v2/repository/index"), ("POST", "/v2/repository/models/{name}/load"),
    ("POST", "/v2/repository/models/{name}/unload"),
    *(
        (verb, base + suffix)
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
        for verb, suffix in (("GET", ""), ("GET", "/ready"), ("GET", "/config"), ("GET", "/stats"), ("POST", "/infer"))
    ),
]


def test_schema_lists_exactly_these_operations(server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{server.http_url}/openapi.json")
    found = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_operation_conforms(server: ServerProcess, method: str, path: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server.http_url}/openapi.json")
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        # Every check but positive-data acceptance: a schema-valid body can still
        # hold bytes that are no image, which the contract rightly rejects (400).
        case.call_and_validate(timeout=60, excluded_checks=[positive_data_acceptance])

    check()
