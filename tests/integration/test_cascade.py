"""The cascade policy end to end: `rung train` fits an answer verifier from records that carry
answer texts, `rung eval` reports the cascade beside the baselines, and the gateway serves it:
a wrong-looking answer climbs the fitted path, a verified one stays, streams can be held until
judged. The records are tests/data/answers-fixture.jsonl: 90 GSM8K and 90 MMLU-Pro prompts of
../shared/data/answers (the production ladder's four models, their answer texts; ZeroEval and
MMLU-Pro results, Apache-2.0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from rung.backends.fake_server import Behavior
from rung.tenants.keys import hash_key
from tests.integration.harness import make_config, tier
from tests.integration.test_train_eval_cli import ROOT, rung

pytestmark = pytest.mark.integration
FIXTURE = ROOT / "tests" / "data" / "answers-fixture.jsonl"
NAMES = ("small", "medium", "large", "xlarge")
KEY = "alice-key-0123456789"
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
SURE = '{"reasoning": "3 + 5 = 8 apples.", "answer": "8"}'


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cascade")
    out = tmp / "clf"
    result = rung(
        "train", "--data", str(FIXTURE), "--ladder", "ladders/production.yaml", "--out", str(out),
        cache=tmp / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cascade" in result.stdout
    return out


def test_train_fits_a_verifier_on_the_answer_texts(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    verifier = manifest["verifier"]
    assert verifier["tiers"] == list(NAMES)
    assert set(verifier["report"]["out_of_fold_auroc"]) == set(NAMES)
    assert len(manifest["training"]["answer_chars"]) == 4


def test_eval_reports_the_cascade_beside_its_baselines(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = rung(
        "eval", "--classifier", str(trained), "--data", str(FIXTURE),
        "--ladder", "ladders/production.yaml", "--out", str(out), cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    cascade = metrics["cascade"]
    assert cascade["verifier"] is True
    # tau = 0 (accept every first answer) is among the swept points: neither can do worse
    # than routing from the prompt alone
    assert 0 < cascade["cost_at_95"] <= cascade["prompt_only_cost_at_95"] + 1e-9
    assert cascade["perfect_verifier_cost_at_95"] <= cascade["prompt_only_cost_at_95"] + 1e-9
    assert metrics["oracle"]["cost_at_95"] <= cascade["prompt_only_cost_at_95"]
    for goal in cascade["at_goals"]:
        held = goal["held_out"]
        assert 1.0 <= held["calls_per_prompt"] <= 4.0
        assert held["keep_95"][0] <= held["keep"] <= held["keep_95"][1]
    # A ladder of some of the classifier's tiers is evaluated as a capped tenant is served.
    subset = tmp_path / "three.yaml"
    subset.write_text(
        (ROOT / "ladders" / "production.yaml").read_text().split("  - name: large")[0]
        + "  - name: xlarge\n"
        + "    model: {mmlu-pro: Meta-Llama-3_1-70B-Instruct, gsm8k: Meta-Llama-3.1-70B-Instruct}\n"
        + "    price: 0.90\n"
    )
    capped = rung(
        "eval", "--classifier", str(trained), "--data", str(FIXTURE),
        "--ladder", str(subset), "--out", str(tmp_path / "capped"), cache=tmp_path / "cache",
    )  # fmt: skip
    assert capped.returncode == 0, capped.stderr
    three = json.loads((tmp_path / "capped" / "metrics.json").read_text())
    paths = [g["params"].split("path=")[1].split("->") for g in three["cascade"]["at_goals"]]
    assert all("large" not in path and path[-1] == "xlarge" for path in paths)


def serve(fake: Any, gateway: Any, trained: Path, **escalation: Any) -> tuple[list[Any], Any]:
    servers = [fake(n) for n in NAMES]
    tiers = [tier(n, s) for n, s in zip(NAMES, servers, strict=True)]
    for t, price in zip(tiers, (0.1, 0.2, 0.6, 0.9), strict=True):
        t["price"] = {"input_per_mtok": price, "output_per_mtok": price}
    config = make_config(
        tiers,
        routing={"policy": "classifier", "classifier": str(trained),
                 "goal": {"max_cost_share": 0.01}},  # the cheapest start: the small tier
        escalation={"enabled": True, "max_steps": 3, **escalation},
        tenants=[{"name": "alice", "keys": [hash_key(KEY)],
                  "policy": {"escalation_threshold": 0.99}}],
    )  # fmt: skip
    return servers, gateway(config)


def ask(gw: Any, stream: bool = False) -> httpx.Response:
    body = {"model": "rung", "messages": [{"role": "user", "content": QUESTION}]}
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={**body, "stream": stream},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    )


def test_an_answer_that_is_not_verified_climbs_the_fitted_path(
    fake: Any, gateway: Any, trained: Path
) -> None:
    servers, gw = serve(fake, gateway, trained)
    small = servers[0]
    small.behavior = Behavior(reply="I am not sure, maybe some apples.")
    for server in servers[1:]:
        server.behavior = Behavior(reply=SURE)
    answer = ask(gw)
    assert answer.status_code == 200, answer.text
    reason = answer.headers["x-rung-route-reason"]
    assert " start=small" in reason
    assert answer.headers["x-rung-escalated"].startswith("small->")
    assert f" escalate {answer.headers['x-rung-escalated'].split(',')[0]} verified=" in reason
    assert answer.headers["x-rung-tier"] != "small"
    assert answer.json()["choices"][0]["message"]["content"] == SURE
    assert small.stats.completed == 1
    assert float(answer.headers["x-rung-confidence"]) >= 0.0


def test_a_held_stream_is_judged_whole_then_streamed(
    fake: Any, gateway: Any, trained: Path
) -> None:
    servers, gw = serve(fake, gateway, trained, streams="hold")
    servers[0].behavior = Behavior(reply="Hmm.")
    for server in servers[1:]:
        server.behavior = Behavior(reply=SURE)
    answer = ask(gw, stream=True)
    assert answer.status_code == 200
    assert answer.headers["x-rung-escalated"].startswith("small->")
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: {")]
    text = "".join(
        (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or "" for e in events
    )
    assert text == SURE
    assert all(s.stats.streams_started == 0 for s in servers)  # asked whole, then replayed
    assert answer.text.rstrip().endswith("data: [DONE]")
