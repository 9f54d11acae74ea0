"""The `rung` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import yaml

from rung.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def rung(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rung", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_config_check_accepts_the_example_and_rejects_a_typo(tmp_path):
    ok = rung("config", "check", str(ROOT / "config" / "example.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "OK: 3 tier(s)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    data["server"]["prot"] = 1
    bad.write_text(yaml.safe_dump(data))
    result = rung("config", "check", str(bad))
    assert result.returncode == 2
    assert f"invalid config {bad}" in result.stderr
    assert "server.prot: unknown key" in result.stderr


def test_a_missing_classifier_is_a_config_error_exit_2(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    data["routing"]["classifier"] = str(tmp_path / "no-such-classifier")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    result = rung("config", "check", str(path))
    assert result.returncode == 2
    assert "no classifier" in result.stderr


def test_rung_up_refuses_a_busy_port_before_loading_anything(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = rung("up", "--config", str(ROOT / "config" / "local.yaml"), "--port", str(port),
                      "--log-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr
    assert "PORT=" in result.stderr
    assert time.monotonic() - started < 20  # no model server was started
    assert not list(tmp_path.iterdir())


def wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def _serve(tmp_path, backend, **server):
    config = tmp_path / "rung.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"port": 1, **server},  # the port is overridden by --port below
                "tiers": [
                    {
                        "name": "small",
                        "model": backend.model,
                        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                        "backends": [{"url": backend.url}],
                    }
                ],
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rung", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM)
    return stdout + stderr  # uvicorn's access log goes to stdout


def test_serve_answers_through_the_sdk_and_stops_on_sigterm(tmp_path, fake):
    proc, port = _serve(tmp_path, fake("small"))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        answer = sdk.chat.completions.create(
            model="rung", messages=[{"role": "user", "content": "ping"}]
        )
        assert answer.choices[0].message.content == "[small] You said: ping"
    finally:
        stderr = _stop(proc)
    assert "ping" not in stderr  # prompt text stays out of the logs
    assert "POST /v1/chat/completions" not in stderr  # no access log unless asked for


def test_the_access_log_names_the_client_a_local_proxy_forwarded(tmp_path, fake):
    """With the access log on, uvicorn's X-Forwarded-For handling is on too (from loopback
    proxies, its default trust): the log shows the client, not the load balancer."""
    proc, port = _serve(tmp_path, fake("small"), access_log=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "rung", "messages": [{"role": "user", "content": "ping"}]},
            headers={"x-forwarded-for": "203.0.113.7"},
        )
        assert response.status_code == 200
    finally:
        stderr = _stop(proc)
    line = next(x for x in stderr.splitlines() if "POST /v1/chat/completions" in x)
    assert "203.0.113.7" in line
    assert "ping" not in stderr


def test_demo_serves_answers_and_leaves_no_fake_servers_behind():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rung", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "rung", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert response.headers["x-rung-tier"] == "small"
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids = children.stdout.split()
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_version_names_the_installed_release():
    from importlib.metadata import version

    result = rung("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rung {version('rung')}"
