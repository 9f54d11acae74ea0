"""The savings dashboard in a real headless browser (Debian's chromium driven by playwright, no
browser download): it loads with no console error, shows what the admin API reports after a
scripted traffic run, and refuses without the admin key."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rung.tenants.keys import hash_key
from tests.integration.harness import Gateway, make_config, tier, wait_until

pytestmark = pytest.mark.integration
ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"
PRICE = {"input_per_mtok": 100.0, "output_per_mtok": 200.0}  # costs that print as 0.00xyz


def chromium() -> str:
    found = os.environ.get("RUNG_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("chromium not found: `apt-get install chromium` (CI installs it)")
    return found


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium(), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def ask(gw: Gateway, key: str, text: str, model: str = "rung") -> None:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}
    headers = {"authorization": f"Bearer {key}"}
    answer = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def figures(gw: Gateway) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {ADMIN}"}
    response = httpx.get(f"{gw.url}/admin/dashboard", headers=headers, timeout=5)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def usd(value: float) -> str:
    """The page's format for amounts under $1 (three significant digits)."""
    return f"${value:#.3g}"


def test_the_dashboard_shows_what_the_admin_api_reports(
    fake: Any, gateway: Any, browser: Any
) -> None:
    small, large = fake("small"), fake("large")
    tiers = [tier("small", small), tier("large", large)]
    tiers[0]["price"] = PRICE
    tiers[1]["price"] = {k: 9 * v for k, v in PRICE.items()}
    gw = gateway(
        make_config(
            tiers,
            server={"admin_key": ADMIN},
            cache={"enabled": True, "semantic": False},
            tenants=[
                {"name": "alice", "keys": [hash_key(ALICE)], "policy": {"daily_budget_usd": 1}},
                {"name": "bob", "keys": [BOB]},
            ],
        )
    )
    ask(gw, ALICE, "What is 2+2?")
    ask(gw, ALICE, "What is 2+2?")  # a cache hit
    ask(gw, ALICE, "Name a prime.", model="large")
    ask(gw, BOB, "Hello?")
    wait_until(lambda: figures(gw)["tenants"]["bob"]["requests"] == 1, what="usage settled")
    wait_until(lambda: figures(gw)["tenants"]["alice"]["requests"] == 3, what="usage settled")
    alice = figures(gw)["tenants"]["alice"]
    assert alice["tier_mix"] == {"large": 1, "small": 2}

    errors: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{gw.url}/dashboard")
    assert "admin key" in page.inner_text("#message")
    assert page.is_hidden("#content")

    page.fill("#key", "not-the-admin-key-at-all")
    page.click("#login button")
    page.wait_for_selector("#message.error")
    assert "Refused (403)" in page.inner_text("#message")
    assert page.is_hidden("#content")
    errors = [e for e in errors if "403" not in e]  # the browser reports the refused fetch

    page.fill("#key", ADMIN)
    page.click("#login button")
    page.wait_for_selector("#content:not([hidden])")
    assert page.input_value("#tenant") == "alice"
    assert page.inner_text("#requests") == "3"
    assert page.inner_text("#hits") == "33.3%"
    assert page.inner_text("#spent") == usd(alice["cost_usd"])
    assert page.inner_text("#top") == usd(alice["top_tier_cost_usd"])
    assert page.inner_text("#saved") == usd(alice["saved_usd"])
    assert page.inner_text("#saved-share").startswith(f"{100 * alice['saved_share']:.1f}%")
    rows = page.locator("#mix tbody tr").all_inner_texts()
    assert [r.split("\t")[:3] for r in rows] == [["large", "1", "33.3%"], ["small", "2", "66.7%"]]
    assert "of $1.00" in page.inner_text("#budget")
    assert page.locator("#chart path[data-series=spend]").count() == 1
    page.select_option("#tenant", "bob")
    assert page.inner_text("#requests") == "1"
    assert page.inner_text("#budget") == "no budget for this tenant"
    shot = os.environ.get("RUNG_DASHBOARD_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    assert errors == []

    # Reloading the tab keeps the key for this tab only; the data endpoint itself needs it.
    assert httpx.get(f"{gw.url}/admin/dashboard", timeout=5).status_code == 401
    page.close()


def test_no_admin_key_configured_no_dashboard(fake: Any, gateway: Any) -> None:
    gw = gateway(make_config([tier("small", fake("small"))]))
    assert httpx.get(f"{gw.url}/dashboard", timeout=5).status_code == 403
