"""`rung demo`: the gateway in front of two fake model servers, so a newcomer gets answers over
HTTP with nothing else installed. The fakes echo the question; `rung up` runs real local models."""

from __future__ import annotations

import logging
import subprocess
import sys

from rung.config import RungConfig, parse_config
from rung.ports import free_port, wait_for_port
from rung.router.logs import configure_logging
from rung.router.serve import serve, sigterm_exits

log = logging.getLogger("rung.demo")


def demo_config(small_port: int, large_port: int, host: str, port: int) -> RungConfig:
    return parse_config(
        {
            "server": {"host": host, "port": port},
            "routing": {"policy": "length", "length_thresholds": [200]},
            "tiers": [
                {
                    "name": "small",
                    "model": "fake-small",
                    "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
                    "backends": [{"url": f"http://127.0.0.1:{small_port}/v1"}],
                },
                {
                    "name": "large",
                    "model": "fake-large",
                    "price": {"input_per_mtok": 0.9, "output_per_mtok": 0.9},
                    "backends": [{"url": f"http://127.0.0.1:{large_port}/v1"}],
                },
            ],
        },
        "<demo>",
    )


def run_demo(host: str, port: int) -> int:
    configure_logging("info")
    sigterm_exits()
    ports = {"small": free_port(), "large": free_port()}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rung.backends.fake_server",
                "--port",
                str(p),
                "--name",
                name,
                "--model",
                f"fake-{name}",
            ]
        )
        for name, p in ports.items()
    ]
    try:
        for p in ports.values():
            wait_for_port(p)
        log.info("fake tiers: small on :%d, large on :%d", ports["small"], ports["large"])
        log.info("gateway on http://%s:%d/v1 (model 'rung' routes; Ctrl-C stops)", host, port)
        serve(demo_config(ports["small"], ports["large"], host, port))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    return 0
