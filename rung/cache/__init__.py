"""The semantic cache: request scoping (keys), the near-miss guard, entries, stores and the
in-process vector index. See docs/cache.md."""
