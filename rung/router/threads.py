"""One thread for numpy's BLAS in a serving process.

A request's vector products are small (a question against the cache's vectors, a row of the
classifier), yet OpenBLAS splits one over every core above a size, and its helper threads
spin-wait between calls. Under bench/workers.py's load (cache on, a few thousand entries in the
exact index) that spinning cost ~4.5 ms of a second core per request and a third of the
gateway's throughput, and it takes cores from other workers. A serving process parallelises
across requests and workers instead; onnxruntime's own pool is set by `routing.embed_threads`.
"""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger("rung.router")


def one_blas_thread() -> dict[str, int]:
    """Limit the BLAS libraries loaded so far (numpy's) to one thread, logged once; returns
    each one's threads before, by library."""
    before = {
        pool["internal_api"]: int(pool["num_threads"])
        for pool in threadpool_info()
        if pool["user_api"] == "blas"
    }
    threadpool_limits(limits=1, user_api="blas")
    if any(threads > 1 for threads in before.values()):
        shown = ", ".join(f"{name} {threads}" for name, threads in before.items())
        log.info("numpy's BLAS on one thread per process (was: %s)", shown)
    return before
