"""The model servers `rung up` can start for a `local:` tier: their command lines and
environments (pure), and where their software lives.

- `llama.cpp`: llama.cpp's own server from the prebuilt `xllamacpp` wheel, in rung's own
  environment (`pip install 'rung[local]'`), on a GGUF file.
- `vllm`: vLLM's OpenAI server, in an environment of its own (vLLM pins its own torch;
  `make vllm` / scripts/install-vllm.sh builds it), on a Hugging Face model directory. A
  packaged GGUF is converted to one once (vLLM 0.32 no longer loads GGUF), by
  `gguf_to_hf.py` run with that environment's Python.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ENGINES = ("llama.cpp", "vllm")
VLLM_VERSION = "0.32.0"
"""The vLLM release rung's tests run against (scripts/install-vllm.sh installs it)."""


def vllm_home() -> Path:
    """Where scripts/install-vllm.sh keeps vLLM's environment and converted weights."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rung" / "vllm"


def vllm_python(configured: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The Python that has vLLM: the tier's `python`, else $RUNG_VLLM_PYTHON, else the one
    scripts/install-vllm.sh made."""
    if configured:
        return configured
    return environ.get("RUNG_VLLM_PYTHON") or str(vllm_home() / "venv" / "bin" / "python")


def llama_command(python: str, model: Path, alias: str, port: int, threads: int, ctx: int,
                  parallel: int) -> list[str]:  # fmt: skip
    return [
        python, "-m", "rung.backends.local.llama_serve", "--model", str(model),
        "--alias", alias, "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
        "--ctx", str(ctx), "--parallel", str(parallel),
    ]  # fmt: skip


def vllm_command(
    python: str,
    model: Path,
    alias: str,
    port: int,
    ctx: int,
    adapters: Mapping[str, Path],
    extra: Sequence[str] = (),
) -> list[str]:
    """vLLM's server on loopback: eager mode (compiling recompiles at every start, ~4 min, and
    is no faster here), float32 (what CPU kernels run), LoRA adapters served as models."""
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", alias, "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(ctx), "--dtype", "float32", "--enforce-eager",
    ]  # fmt: skip
    if adapters:
        command += ["--enable-lora", "--max-lora-rank", "16", "--lora-modules"]
        command += [f"{name}={path}" for name, path in adapters.items()]
    return [*command, *extra]


def vllm_env(environ: Mapping[str, str], run_dir: Path, kv_cache_gib: int = 1) -> dict[str, str]:
    """vLLM's environment: its internal queues on loopback (without VLLM_HOST_IP it binds a
    non-loopback address), no hub, no usage reporting, a bounded KV cache, and its sockets and
    caches in one folder of ours."""
    return {
        **environ,
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TMPDIR": str(run_dir),
        "TORCHINDUCTOR_CACHE_DIR": str(run_dir / "inductor"),
        "VLLM_CACHE_ROOT": str(run_dir / "cache"),
    }


def converted_dir(gguf: Path) -> Path:
    """Where a GGUF file's Hugging Face conversion is kept."""
    return vllm_home() / "models" / gguf.stem
