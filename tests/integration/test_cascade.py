"""The cascade policy end to end: `rung train` fits an answer verifier from records that carry
answer texts, `rung eval` reports the cascade beside the baselines, and the gateway serves it:
a wrong-looking answer climbs the fitted path, a verified one stays, streams can be held until
judged. The records are tests/data/answers-fixture.jsonl: 90 GSM8K and 90 MMLU-Pro prompts of
../shared/data/answers (the production ladder's four models, their answer texts; ZeroEval and
MMLU-Pro results, Apache-2.0)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from rung.backends.fake_server import Behavior
from rung.classifiers import workflow
from rung.classifiers.answers import read
from rung.classifiers.embedder import open_embedder
from rung.classifiers.model import load
from rung.classifiers.outcomes import DataError, load_ladder
from rung.classifiers.verifier import inputs
from rung.confidence.fit import auroc
from rung.tenants.keys import hash_key
from rung.weights.fetch import default_models_dir
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


def _with_signals(path: Path, models: set[str]) -> None:
    """The fixture with logprob signals (as `rung label` keeps them) for these models' answers,
    made to say what the score says: confident tokens where the answer is right."""
    rng = random.Random(7)
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    for row in rows:
        for model, result in row["results"].items():
            if model not in models or "text" not in result:
                continue
            mean = -0.08 if result["score"] else -0.9
            mean += rng.gauss(0, 0.15)
            result["signals"] = {
                "tokens": 80, "mean_logprob": round(mean, 4), "min_logprob": round(6 * mean, 4),
                "low_quantile_logprob": round(3 * mean, 4), "lowest_k_mean": round(5 * mean, 4),
                "mean_entropy": round(-mean, 4), "truncated": False, "empty": False,
                "refusal": False, "invalid_json": False,
            }  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_train_fits_the_logprob_input_from_records_that_kept_signals(
    trained: Path, tmp_path: Path
) -> None:
    """Signals from `rung label` reach the verifier through the config's calibrator (`local`
    knows small and large): where they say something, the verifier learns to listen."""
    data = tmp_path / "with-signals.jsonl"
    small_models = {"Phi-3.5-mini-instruct", "Phi-3-mini-4k-instruct"}
    _with_signals(data, small_models)
    out = tmp_path / "clf"
    result = rung(
        "train", "--data", str(data), "--ladder", "ladders/production.yaml", "--out", str(out),
        "--calibrator", "local", cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["verifier_calibrator"] == "local"
    with_signals = manifest["verifier"]["report"]["out_of_fold_auroc"]
    without = json.loads((trained / "manifest.json").read_text())["verifier"]["report"]
    assert with_signals["small"] > without["out_of_fold_auroc"]["small"] + 0.05
    # medium has no signals (and `local` no medium): its verifier is as good as before (the
    # inputs' standardisation is shared by the tiers, so not to the last digit)
    assert with_signals["medium"] == pytest.approx(without["out_of_fold_auroc"]["medium"], abs=0.01)
    # serving: the same answer reads as more likely right with confident tokens
    verifier = load(out).verifier
    assert verifier is not None
    features = read(SURE, QUESTION, "stop").features
    sure, unsure = (
        verifier.probability(0, inputs(features, 0.5, c)) for c in (0.95, 0.05)
    )  # fmt: skip
    assert sure > unsure + 0.2
    # evaluation (`rung eval --classifier`) reads fresh records' signals through the calibrator
    # the verifier was fitted with: on the prompts it never saw, small's answers are judged
    # better with them than from the same records without
    ladder = load_ladder(ROOT / "ladders" / "production.yaml")
    embedder, identity = open_embedder("static-minilm-l6", default_models_dir(), threads=1)
    judged = {}
    for name, file in (("with", data), ("without", FIXTURE)):
        records = workflow.load_data([file], ladder)
        texts = [o.prompt for o in records.outcomes]
        vectors = workflow.embed_all(embedder, identity, texts, tmp_path / "embeddings")
        held, _, part = workflow.served(load(out), records, vectors, ladder)
        assert held.verified is not None
        judged[name] = auroc(held.verified[:, 0], part.scores[:, 0] >= 0.5)
    assert judged["with"] > judged["without"] + 0.05
    # a verifier whose calibrator is not on this machine says so instead of judging without it
    manifest["training"]["verifier_calibrator"] = str(tmp_path / "gone.json")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="needs its calibrator"):
        workflow.served(load(out), records, vectors, ladder)


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
