"""Tenants: API keys, per-tenant policy, the spend ledger, rate limits and usage records, each
store in memory (one process) or Redis (every replica). See docs/tenants.md."""
