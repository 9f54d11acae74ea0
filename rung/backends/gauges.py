"""What a vLLM server says about its own load, read from its Prometheus endpoint at each health
probe: requests waiting in its queue and the share of its KV cache in use. A replica another
gateway (or any other client) keeps busy shows it there, where this gateway's own count of
requests in flight cannot see it. Servers without these gauges are asked once, then never."""

from __future__ import annotations

from dataclasses import dataclass

WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"


@dataclass(frozen=True)
class Gauges:
    waiting: float
    kv_cache: float
    """0..1"""

    @property
    def pressure(self) -> float:
        """0..1: full when requests queue inside the server, else its KV cache in use."""
        return 1.0 if self.waiting > 0 else min(max(self.kv_cache, 0.0), 1.0)


def parse(text: str) -> Gauges | None:
    """The gauges in a Prometheus exposition (summed over engines), or None without them."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in (WAITING, KV_CACHE):
            try:
                found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    if WAITING not in found:
        return None
    return Gauges(found[WAITING], found.get(KV_CACHE, 0.0))
