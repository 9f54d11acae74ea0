"""Keep the startup heap out of the cyclic garbage collector's full passes.

A serving process holds a large, long-lived heap from startup (FastAPI, pydantic models, numpy,
the classifier and the embedder); each full (generation-2) collection walked all of it, about
70 ms a pass, about 50 us (a tenth) of the pinned path's CPU per request at 64 concurrent
requests (measured with gc callbacks under bench/compare.py's load). `gc.freeze()` moves what
is alive at that point to a permanent generation the collector skips; what requests allocate is
still collected as before.
Only `rung serve` asks for it (tests build many apps in one process).
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """After startup: collect once, then freeze every object still alive."""
    gc.collect()
    gc.freeze()


def refreeze() -> None:
    """After a reload has retired the old runtime: unfreeze so its cycles can be collected,
    collect, freeze what is alive now (the new runtime)."""
    gc.unfreeze()
    freeze()
