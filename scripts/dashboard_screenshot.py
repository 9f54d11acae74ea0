"""Render docs/dashboard.png: a simulated week of traffic (fake backends on 127.0.0.1, the
gateway's clock stepped through seven days) shown in the real dashboard by headless chromium.

    python scripts/dashboard_screenshot.py [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rung.backends.fake_server import FakeServer  # noqa: E402
from rung.tenants.keys import hash_key  # noqa: E402
from tests.integration.harness import Gateway, LoopThread, make_config, tier  # noqa: E402

ADMIN, ALICE, BOB = "admin-key-0123456789", "alice-key-0123456789", "bob-key-0123456789ab"
SHORT = [
    "What is {n}+{n}?",
    "Capital of country #{n}?",
    "Translate 'hello' ({n})",
    "Define word {n}",
]
LONG = "Explain, step by step and with a worked example, how to prove statement {n}. " * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/dashboard.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    loop = LoopThread()
    small, large = FakeServer("small", "small-model"), FakeServer("large", "large-model")
    for server in (small, large):
        loop.run(server.start())
    tiers = [tier("small", small), tier("large", large)]
    tiers[0]["price"] = {"input_per_mtok": 2.0, "output_per_mtok": 2.0}
    tiers[1]["price"] = {"input_per_mtok": 18.0, "output_per_mtok": 18.0}
    gw = Gateway(loop, make_config(
        tiers,
        server={"admin_key": ADMIN},
        routing={"policy": "length", "length_thresholds": [200]},
        cache={"enabled": True, "semantic": False},
        tenants=[
            {"name": "alice", "keys": [hash_key(ALICE)], "policy": {"daily_budget_usd": 0.05}},
            {"name": "bob", "keys": [BOB]},
        ],
    ))  # fmt: skip
    gate = gw.app.state.runtime.gate
    rng = random.Random(7)
    now = time.time()
    clock = [now - 7 * 86400]
    gate.clock = lambda: clock[0]
    try:
        with httpx.Client(timeout=10) as http:
            while clock[0] < now:
                hour = time.gmtime(clock[0]).tm_hour
                for _ in range(rng.randint(2, 4) + (4 if 8 <= hour <= 18 else 0)):
                    n = rng.randint(1, 400)
                    text = (
                        LONG.format(n=n) if rng.random() < 0.25 else rng.choice(SHORT).format(n=n)
                    )
                    body = {"model": "rung", "messages": [{"role": "user", "content": text}],
                            "max_tokens": 64}  # fmt: skip
                    key = ALICE if rng.random() < 0.7 else BOB
                    http.post(f"{gw.url}/v1/chat/completions", json=body,
                              headers={"authorization": f"Bearer {key}"})  # fmt: skip
                clock[0] += 3600
        clock[0] = now
        time.sleep(0.5)  # the last settlements
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{gw.url}/dashboard")
            page.fill("#key", ADMIN)
            page.click("#login button")
            page.wait_for_selector("#content:not([hidden])")
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"wrote {args.out}")
    finally:
        gw.stop()
        for server in (small, large):
            loop.run(server.stop())
        loop.close()


if __name__ == "__main__":
    main()
