"""The gateway routing with the shipped classifier (real embedder, real difficulty model) in
front of fake model servers."""

from __future__ import annotations

import json
import logging
import re
import shutil
from typing import Any

import pytest

from rung.backends.fake_server import Behavior
from rung.classifiers.cascade import start
from rung.classifiers.model import load, resolve
from rung.confidence.calibrator import shipped_calibrator
from rung.config import EscalationConfig, parse_config
from rung.errors import ConfigError
from rung.router.app import build_routing
from tests.integration.harness import client, make_config, tier, wait_until

EASY = "What is the capital of France?"
HARD = (
    "Let f(x) = x^5 - 3x^3 + 2x - 7. Find the number of real roots of f'(x) = 0 and prove "
    "that the sum of the squares of the roots of f equals 6, using Newton's identities."
)


def one_tier(name: str, **routing: object):
    """A one-tier config (a backend nobody calls) routed by the classifier."""
    tier = {
        "name": name,
        "model": "m",
        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }
    return parse_config({"routing": {"policy": "classifier", **routing}, "tiers": [tier]}, "x", {})


def ladder(fake, names=("small", "medium", "large"), **routing):
    servers = [fake(n) for n in names]
    tiers = [tier(s.name, s) for s in servers]
    for t, price in zip(tiers, (0.1, 0.2, 0.6, 0.9), strict=False):  # the production ladder's
        t["price"] = {"input_per_mtok": price, "output_per_mtok": price}
    config = make_config(tiers, routing={"policy": "classifier", **routing})
    return servers, config


def probabilities(reason: str) -> dict[str, float]:
    found = re.findall(r"(\w+)=([0-9.e-]+)", reason)
    return {k: float(v) for k, v in found if k not in ("target", "lambda", "tau")}


def lam(reason: str) -> float:
    match = re.search(r"lambda=([0-9.e-]+)", reason)
    assert match, reason
    return float(match.group(1))


@pytest.mark.parametrize("question", [EASY, HARD])
def test_routed_by_the_classifier_with_its_probabilities_in_the_header(fake, gateway, question):
    servers, config = ladder(fake, goal={"keep": 0.95})
    raw = client(gateway(config)).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": question}]
    )
    reason = raw.headers["x-rung-route-reason"]
    assert reason.startswith("classifier small=")
    assert " goal=keep:0.95 lambda=" in reason
    probs = probabilities(reason)
    assert list(probs) == ["small", "medium", "large"]  # xlarge is not served by this config
    # The start rule: P(success) - lambda x expected cost / the dearest's, where a tier's
    # expected cost is its price x (the prompt + its mean answer), from the classifier.
    chars = load(resolve("production")).answer_chars[:3]
    prices = [config.tiers[i].price.input_per_mtok for i in range(3)]
    expected = [p * (len(question) + c) for p, c in zip(prices, chars, strict=True)]
    first = start(list(probs.values()), expected, lam(reason), range(3))
    assert raw.headers["x-rung-tier"] == ["small", "medium", "large"][first]
    assert reason.endswith(f"start={raw.headers['x-rung-tier']}")
    assert sum(s.stats.requests for s in servers) == 1


def test_the_goal_moves_traffic_between_tiers(fake, gateway):
    _, frugal = ladder(fake, goal={"max_cost_share": 0.01})
    cheap = client(gateway(frugal)).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": HARD}]
    )
    assert cheap.headers["x-rung-tier"] == "small"
    # Relative to Mixtral (large), small already keeps everything: on this data Phi-3 scores
    # as well. With the 70B served, keeping all of its score takes a small lambda.
    _, demanding = ladder(fake, ("small", "medium", "large", "xlarge"), goal={"keep": 1.0})
    dear = client(gateway(demanding)).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": HARD}]
    )
    order = ["small", "medium", "large", "xlarge"]
    assert order.index(dear.headers["x-rung-tier"]) >= order.index(cheap.headers["x-rung-tier"])


def test_easy_questions_look_easier_than_hard_ones(fake, gateway):
    _, config = ladder(fake)
    sdk = client(gateway(config))
    easy, hard = (
        probabilities(
            sdk.chat.completions.with_raw_response.create(
                model="rung",
                messages=[{"role": "user", "content": q}],
            ).headers["x-rung-route-reason"]
        )
        for q in (EASY, HARD)
    )
    assert easy["small"] > hard["small"]


def test_the_legacy_target_still_works(fake, gateway):
    _, lenient = ladder(fake, quality_target=0.0)
    raw = client(gateway(lenient)).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": HARD}]
    )
    assert raw.headers["x-rung-tier"] == "small"
    _, strict = ladder(fake, quality_target=1.0)
    raw = client(gateway(strict)).chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": HARD}]
    )
    probs = probabilities(raw.headers["x-rung-route-reason"])
    assert raw.headers["x-rung-tier"] == max(probs, key=lambda k: probs[k])
    assert raw.headers["x-rung-route-reason"].endswith("best-available")


def test_a_config_sharing_no_tier_with_the_classifier_fails_at_startup():
    config = one_tier("alpha")
    with pytest.raises(ConfigError, match="share no name"):
        build_routing(config)


def test_check_routing_fails_fast_with_what_to_change(tmp_path):
    from rung.router.app import check_routing

    check_routing(one_tier("small"))  # the shipped production classifier knows `small`
    with pytest.raises(Exception, match="no classifier 'nope'"):
        check_routing(one_tier("small", classifier="nope"))
    with pytest.raises(ConfigError, match="was trained on embedder 'static-minilm-l6'"):
        check_routing(one_tier("small", embedder="minilm-l6-int8"))
    with pytest.raises(ConfigError, match="unknown embedder"):
        check_routing(one_tier("small", embedder="smollm2-135m"))
    check_routing(
        one_tier("small", classifier=str(tmp_path), policy="length")
    )  # length: nothing to check


def test_a_verifier_fitted_with_another_calibrator_is_refused_when_it_would_judge(tmp_path):
    from rung.router.app import check_routing

    shipped = resolve("production")
    copy = tmp_path / "clf"
    shutil.copytree(shipped, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["training"]["verifier_calibrator"] = str(tmp_path / "mine.json")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    judging = {"enabled": True, "calibrator": "local"}

    def config(**escalation: object) -> Any:
        base = one_tier("small", classifier=str(copy))
        return base.model_copy(update={"escalation": EscalationConfig(**escalation)})

    with pytest.raises(ConfigError, match="learned from the confidence of calibrator"):
        check_routing(config(**judging))
    check_routing(config(enabled=False))  # the verifier judges nothing: nothing to match
    manifest["training"]["verifier_calibrator"] = "local"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    check_routing(config(**judging))
    # the same calibrator named by its file is the same calibrator
    manifest["training"]["verifier_calibrator"] = str(shipped_calibrator("local"))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    check_routing(config(**judging))


def test_prepare_routing_turns_a_failed_embedder_fetch_into_a_clear_error(tmp_path, monkeypatch):
    from rung.router.app import prepare_routing

    monkeypatch.setenv("RUNG_MODELS_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "all-MiniLM-L6-v2-int8.onnx").write_bytes(b"not the model")
    config = one_tier("small")
    with pytest.raises(ConfigError, match="move it away") as excinfo:
        prepare_routing(config)
    assert excinfo.value.path == "routing.embedder"
    assert (tmp_path / "empty" / "all-MiniLM-L6-v2-int8.onnx").read_bytes() == b"not the model"


def test_the_shadow_guard_holds_back_a_tier_below_its_validated_agreement(fake, gateway, caplog):
    """The classifier's bar: what the tier agreed with the top tier on the validation split.
    A tier that never agrees falls below it and is held back for the tenant's routed requests."""
    caplog.set_level(logging.INFO, logger="rung")
    servers, config = ladder(fake, goal={"keep": 0.95})
    for server in servers[:-1]:
        server.behavior = Behavior(reply="The answer is (B).")
    servers[-1].behavior = Behavior(reply="The answer is (C).")
    config = config.model_copy(
        update={"shadow": config.shadow.model_copy(update={"rate": 1.0, "guard_min_checks": 5})}
    )
    gw = gateway(config)
    sdk = client(gw)

    def ask(i: int):
        return sdk.chat.completions.with_raw_response.create(
            model="rung", messages=[{"role": "user", "content": f"{EASY} ({i})"}]
        )

    first = ask(0).headers["x-rung-tier"]
    assert first != "large"  # a routed answer the reference did not give: it is checked
    bar = gw.app.state.runtime.pipeline.chooser.agreement(None, None)[first]
    assert 0.3 < bar < 0.9  # the lower bound of what it agreed on the validation split
    assert f"{first} {bar:.2f}" in caplog.text  # the startup line says so
    for i in range(1, 8):  # 8 checks, none agreeing: the interval's top (0.32) is below the bar
        ask(i)
    shadow = gw.app.state.runtime.pipeline.shadow
    wait_until(lambda: shadow.checks["default"] >= 8, what="eight checks")
    held = ask(8)
    assert held.headers["x-rung-route-reason"].endswith(f"; shadow guard holds back {first}")
    assert held.headers["x-rung-tier"] != first


def test_the_shadow_guard_leaves_a_tier_that_agrees_as_often_as_where_the_goal_was_met(
    fake, gateway
):
    """Agreement is not correctness: a tier that agrees half the time, above what it agreed on
    the validation split, keeps serving (a bar of `keep` itself would hold it back)."""
    servers, config = ladder(fake, goal={"keep": 0.95})
    servers[-1].behavior = Behavior(reply="The answer is (C).")
    config = config.model_copy(
        update={"shadow": config.shadow.model_copy(update={"rate": 1.0, "guard_min_checks": 5})}
    )
    gw = gateway(config)
    sdk = client(gw)
    shadow = gw.app.state.runtime.pipeline.shadow
    for i in range(12):
        agrees = i % 2 == 0
        for server in servers[:-1]:
            server.behavior = Behavior(reply=f"The answer is ({'C' if agrees else 'B'}).")
        sdk.chat.completions.create(
            model="rung", messages=[{"role": "user", "content": f"{EASY} ({i})"}]
        )
        wait_until(lambda n=i + 1: shadow.checks["default"] >= n, what="the check")
    (tally,) = shadow.tallies["default"].values()
    assert (tally.sampled, tally.agreed) == (12, 6)  # the interval's top, 0.75, is below 0.95
    last = sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": f"{EASY} (last)"}]
    )
    assert "shadow guard" not in last.headers["x-rung-route-reason"]
    assert last.headers["x-rung-tier"] == "small"
