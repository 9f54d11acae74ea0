"""`rung keys new | usage` commands: what the parsed arguments (rung.cli) ask for."""

from __future__ import annotations

import argparse
import sys


def run_keys_new(args: argparse.Namespace) -> int:
    from rung.tenants.keys import hash_key, new_key

    key = new_key()
    print(f"API key (give it to the tenant; rung keeps only its hash): {key}")
    print("Paste under the tenant in the admin config:")
    print(f"    keys: [{hash_key(key)}]")
    if args.tenant:
        print(f"  (tenant: {args.tenant})")
    return 0


def run_usage(args: argparse.Namespace) -> int:
    import csv
    import datetime as dt
    import json
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    since = dt.datetime.fromisoformat(args.since)
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    key = os.environ.get(args.admin_key_env, "")
    query = urllib.parse.urlencode({"tenant": args.tenant, "since": since.timestamp()})
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/admin/usage/records?{query}",
        headers={"authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            records = json.loads(response.read())["records"]
    except urllib.error.HTTPError as exc:
        print(
            f"error: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}", file=sys.stderr
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(records, indent=2))
        return 0
    fields = [
        "time", "tenant", "tier", "tiers", "models", "prompt_tokens", "completion_tokens",
        "cost_usd", "top_tier_cost_usd", "cache", "escalated", "latency_ms", "status",
    ]  # fmt: skip
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in records:
        writer.writerow(
            {
                **row,
                "time": dt.datetime.fromtimestamp(row["time"], dt.UTC).isoformat(),
                "tiers": " ".join(row["tiers"]),
                "models": " ".join(row["models"]),
                "cost_usd": row["cost"] / 1e6,
                "top_tier_cost_usd": row["top_tier_cost"] / 1e6,
            }
        )
    return 0
