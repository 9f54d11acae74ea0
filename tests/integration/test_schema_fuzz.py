"""Schema-driven fuzzing of the OpenAI routes (issue 13): /openapi.json describes the request
bodies, schemathesis generates 1,000 requests from it (valid and edge-case bodies), and rung
answers every one without a server error, against a live gateway and a fake backend."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from rung.router.app import create_app
from tests.integration.harness import make_config, tier

pytestmark = pytest.mark.integration
PER_OPERATION = 500


def config(fake=None):
    backend = tier("small", fake("small")) if fake else {**tier_stub(), "name": "small"}
    # The harness probes every 0.2 s and drops a replica after one slow probe; with the fuzzer
    # loading the shared loop that turned into 503 no_backend_available (correct, but not what
    # this test is about): production health settings here.
    health = {"interval_s": 5, "probe_timeout_s": 5, "failure_threshold": 3, "cooldown_s": 1}
    return make_config(
        [backend], routing={"policy": "length"}, server={"max_body_bytes": 65536}, health=health
    )


def tier_stub():
    return {
        "model": "fake-model",
        "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }


SCHEMA = schemathesis.openapi.from_dict(create_app(config()).openapi())


def test_the_schema_describes_the_request_bodies():
    spec = create_app(config()).openapi()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["required"]) >= {"model", "messages"}
    assert "$ref" not in str(schema)  # self-contained: fuzzers and generators resolve it


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_generated_requests_never_get_a_server_error(fake, gateway, path):
    gw = gateway(config(fake))
    seen: list[int] = []

    @given(case=SCHEMA[path]["POST"].as_strategy())
    @settings(
        max_examples=PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        # About half of them past the model check, into routing. Decided by the case itself
        # (not by a counter) so that hypothesis can replay and shrink a failure.
        if isinstance(case.body, dict) and len(case.body) % 2:
            case.body["model"] = "rung"
        response = case.call(base_url=gw.url, timeout=10)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text[:300])
        if response.status_code >= 400:
            assert "error" in response.json()  # OpenAI's error shape

    check()
    assert len(seen) >= PER_OPERATION * 0.9  # ~1,000 cases over both routes
    assert any(code == 200 for code in seen)
