from __future__ import annotations

import re
from pathlib import Path

import pytest

from rung.backends.local.launcher import (
    LaunchError,
    LlamaServer,
    llama_env,
    resolve_weights,
    with_backends,
)
from rung.config import parse_config


def test_model_servers_do_not_inherit_settings_from_our_environment():
    env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "PORT": "8080",
        "host": "0.0.0.0",
        "API_KEY": "secret",
        "CONFIG_FILE": "x.yaml",
        "N_CTX": "9",
    }
    assert llama_env(env) == {"PATH": "/usr/bin", "HOME": "/root"}


def test_the_server_command_pins_loopback_port_threads_and_context(tmp_path: Path):
    server = LlamaServer(
        tier="small",
        alias="m",
        model_path=tmp_path / "m.gguf",
        port=4321,
        n_threads=1,
        n_ctx=2048,
        python="py",
    )
    command = server.command()
    assert command[:3] == ["py", "-m", "rung.backends.local.llama_serve"]
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs == {
        "--model": str(tmp_path / "m.gguf"),
        "--model_alias": "m",
        "--host": "127.0.0.1",
        "--port": "4321",
        "--n_threads": "1",
        "--n_ctx": "2048",
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
    servers = [LlamaServer("local", "l", tmp_path, port) for port in (7001, 7002)]
    ready = with_backends(config, servers)
    assert [b.url for b in ready.tiers[0].backends] == ["http://127.0.0.1:9000/v1"]
    local = ready.tiers[1].backends
    assert [b.url for b in local] == ["http://127.0.0.1:7001/v1", "http://127.0.0.1:7002/v1"]
    assert {b.max_concurrency for b in local} == {1}  # llama.cpp serves one at a time
    assert {b.read_timeout_s for b in local} == {99}
    assert ready.unlaunched_local_tiers() == []
