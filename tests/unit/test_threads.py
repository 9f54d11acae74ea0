"""A serving process runs numpy's BLAS on one thread (rung.router.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json
import numpy
from threadpoolctl import threadpool_info
from rung.router.threads import one_blas_thread
before = one_blas_thread()
after = {p["internal_api"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
print(json.dumps({"before": before, "after": after}))
"""


def test_numpy_blas_is_limited_to_one_thread_and_the_old_count_reported() -> None:
    # Two threads asked for explicitly: the limit must act whatever this machine's core count.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["before"], "numpy's BLAS was not found"
    assert set(seen["before"].values()) == {2}
    assert set(seen["after"].values()) == {1}
    assert seen["after"].keys() == seen["before"].keys()
