"""Per-request cost of the request deadline: asyncio.timeout_at against rung's shared-timer
Deadlines (rung.router.deadline), and neither, on uvloop with 64 requests in flight that each
await one future. Medians of rotated rounds, microseconds of CPU per request, JSON out.

    python bench/deadline.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from rung.router.deadline import Deadlines

IN_FLIGHT = 64
TIMEOUT_S = 120.0


async def _rounds(kind: str, requests: int) -> float:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()

    async def bare(wait: asyncio.Future[None]) -> None:
        await wait

    async def stdlib(wait: asyncio.Future[None]) -> None:
        async with asyncio.timeout_at(loop.time() + TIMEOUT_S):
            await wait

    async def shared(wait: asyncio.Future[None]) -> None:
        with deadlines.within(loop.time() + TIMEOUT_S):
            await wait

    one: Callable[[asyncio.Future[None]], Coroutine[Any, Any, None]] = {
        "none": bare,
        "asyncio.timeout_at": stdlib,
        "Deadlines": shared,
    }[kind]
    batches = max(1, requests // IN_FLIGHT)
    started = time.process_time()
    for _ in range(batches):
        waits: list[asyncio.Future[None]] = [loop.create_future() for _ in range(IN_FLIGHT)]
        tasks = [loop.create_task(one(w)) for w in waits]
        await asyncio.sleep(0)
        for w in waits:
            w.set_result(None)
        await asyncio.gather(*tasks)
    return 1e6 * (time.process_time() - started) / (batches * IN_FLIGHT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    kinds = ["none", "asyncio.timeout_at", "Deadlines"]
    spent: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds[r % 3 :] + kinds[: r % 3]:
            spent[kind].append(uvloop.run(_rounds(kind, args.requests)))
    median = {k: statistics.median(v) for k, v in spent.items()}
    print(
        json.dumps(
            {
                "cpu_us_per_request": {k: round(v, 2) for k, v in median.items()},
                "deadline_us": {
                    "asyncio.timeout_at": round(median["asyncio.timeout_at"] - median["none"], 2),
                    "Deadlines": round(median["Deadlines"] - median["none"], 2),
                },
                "in_flight": IN_FLIGHT,
                "requests": args.requests,
                "rounds": args.rounds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
