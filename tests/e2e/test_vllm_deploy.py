"""The deployment files checked against vLLM itself: every vLLM command line in
docker-compose.yml and deploy/kubernetes is parsed by the installed vLLM's own argument parser,
so a flag that does not exist fails here, and each is held to what rung's production config
relies on for the tier it serves (tool parser for tool-calling tiers, LoRA for adapters, enough
logprobs for escalation, the context window, the port rung calls)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from rung.config import load_config
from rung.router.escalate import TOP_LOGPROBS
from tests.e2e.test_vllm import require_vllm

pytestmark = [pytest.mark.e2e, pytest.mark.vllm, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "RUNG_PRODUCT_KEY_SHA256": "sha256:" + "0" * 64,
    "RUNG_INTERNAL_KEY_SHA256": "sha256:" + "1" * 64,
}


def command_lines() -> dict[str, list[str]]:
    """Each vLLM server's arguments, by where they come from."""
    out: dict[str, list[str]] = {}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "vllm/vllm-openai" in str(service.get("image", "")):
            out[f"docker-compose.yml {name}"] = [str(a) for a in service["command"]]
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            containers = (
                ((document or {}).get("spec") or {}).get("template", {}).get("spec", {})
            ).get("containers", [])
            for container in containers:
                if "vllm/vllm-openai" in container.get("image", ""):
                    deployment = document["metadata"]["name"]
                    where = f"{path.relative_to(ROOT)} {deployment}/{container['name']}"
                    out[where] = [str(a) for a in container.get("args", [])]
    return out


BAD = ["--model", "m", "--enable-lora-modules", "x"]
"""A flag vLLM does not have: parsed beside the real ones, it must be refused."""


def parsed() -> dict[str, dict[str, Any]]:
    """Every command line parsed by vLLM (one process: importing vLLM takes most of a minute),
    plus BAD under the key "bad"."""
    lines = {**command_lines(), "bad": BAD}
    done = subprocess.run(
        [require_vllm(), str(Path(__file__).with_name("vllm_args.py"))],
        input=json.dumps(list(lines.values())),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(zip(lines, json.loads(done.stdout.splitlines()[-1]), strict=True))


def test_every_vllm_command_line_is_one_vllm_accepts_and_rung_can_use() -> None:
    results = parsed()
    # the check itself: vLLM refuses a flag it does not have
    assert "unrecognized arguments" in " ".join(results.pop("bad")["error"])
    assert len(results) >= 8  # four tiers in compose, the same four in Kubernetes
    config = load_config(ROOT / "config" / "production.yaml", env=KEYS)
    by_model = {t.model: t for t in config.tiers}
    images = {
        line.split("image:", 1)[1].strip()
        for line in (ROOT / "docker-compose.yml").read_text().splitlines()
        if "vllm/vllm-openai" in line
    }
    from rung.backends.local.engines import VLLM_VERSION

    assert images == {f"vllm/vllm-openai:v{VLLM_VERSION}"}  # the release these checks ran on
    for where, args in results.items():
        assert "error" not in args, f"{where}: vLLM refuses it: {args.get('error')}"
        (name,) = args["served_model_name"]
        tier = by_model.get(name)
        assert tier is not None, f"{where}: serves {name!r}, which no tier of production.yaml calls"
        ports = {urlparse(b.url).port for b in tier.backends}
        assert ports == {args["port"]}, where
        assert args["max_logprobs"] >= TOP_LOGPROBS, f"{where}: escalation asks for 5 logprobs"
        if tier.tools:
            assert args["enable_auto_tool_choice"], f"{where}: tier {tier.name} takes tools"
            assert args["tool_call_parser"], f"{where}: tier {tier.name} needs a tool parser"
        for adapter in tier.adapters.values():
            assert args["enable_lora"], f"{where}: tier {tier.name} serves LoRA adapters"
            assert adapter.model in args["lora_modules"], where
        if tier.context_window is not None:
            assert args["max_model_len"] >= tier.context_window, where
