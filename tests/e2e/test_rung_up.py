"""`rung up` as a user runs it: a real process that starts llama.cpp servers and the gateway,
and leaves nothing behind when it is stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from rung.ports import free_port
from tests.e2e.conftest import require_real_models

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_rung_up_serves_and_stops_everything(tmp_path: Path, stop: signal.Signals):
    models_dir = require_real_models("smollm2-135m")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "routing": {"policy": "length"},
                "tiers": [
                    {
                        "name": "tiny",
                        "model": "smollm2",
                        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                        "local": {"weights": "smollm2-135m"},
                    }
                ],
            }
        )
    )
    port = free_port()
    # PORT and API_KEY in the environment must not reach the llama.cpp server's settings.
    env = {**os.environ, "PORT": str(port), "API_KEY": "not-for-llama", "LLAMA_ARG_PORT": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rung",
            "up",
            "--config",
            str(config),
            "--port",
            str(port),
            "--models-dir",
            str(models_dir),
            "--no-fetch",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "rung up did not become ready"
            time.sleep(0.2)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=60,
            json={
                "model": "rung",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "Say hello"}],
            },
        )
        assert answer.status_code == 200
        assert answer.headers["x-rung-tier"] == "tiny"
        assert answer.json()["model"] == "smollm2"
        # No admin key in the file: `rung up` prints a one-time key that opens the dashboard.
        pattern = rf"dashboard: http://127\.0\.0\.1:{port}/dashboard#key=(\S+)"
        wait = time.monotonic() + 10
        while not (link := re.search(pattern, "".join(lines))):
            assert time.monotonic() < wait, "".join(lines)
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/admin/dashboard"
        assert httpx.get(url, timeout=10).status_code == 401
        opened = httpx.get(url, headers={"authorization": f"Bearer {link.group(1)}"}, timeout=10)
        assert opened.status_code == 200
        servers = children(proc.pid)
        assert len(servers) == 1
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=30)
        reader.join(10)
    output = "".join(lines)
    assert "tier tiny" in output
    assert "ready on http://127.0.0.1:" in output
    for pid in servers:
        assert not Path(f"/proc/{pid}").exists(), "llama.cpp server left behind"
