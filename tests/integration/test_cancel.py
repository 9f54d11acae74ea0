"""A client that goes away mid-stream cancels the backend request and frees the replica."""

from __future__ import annotations

import httpx

from tests.integration.harness import make_config, tier, wait_until


def test_client_disconnect_mid_stream_cancels_the_backend_stream(fake, gateway):
    backend = fake("small")
    backend.behavior.reply = " ".join(f"w{i}" for i in range(200))
    backend.behavior.chunk_delay_s = 0.05
    gw = gateway(make_config([tier("small", backend)]))
    body = {"model": "rung", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=5) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        seen = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: {") for line in seen)
    # 200 tokens at 50 ms would take 10 s; the backend must see the disconnect long before.
    wait_until(lambda: backend.stats.streams_aborted == 1, timeout=3, what="backend abort")
    assert backend.stats.streams_finished == 0
    pool = gw.app.state.runtime.pools[0]
    wait_until(lambda: pool.replicas[0].outstanding == 0, timeout=3, what="slot released")
    assert pool.replicas[0].breaker.failures == 0  # a client leaving is not a backend failure
