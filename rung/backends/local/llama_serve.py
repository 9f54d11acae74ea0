"""`python -m rung.backends.local.llama_serve ARGS`: llama.cpp's own OpenAI-compatible server
(the C++ `llama-server`, prebuilt in the `xllamacpp` wheel) for one GGUF file.

Why this server: it ships as a prebuilt wheel (no compiler, no 4-20 minute build), batches
requests continuously, answers `GET /health`, and a health check or a second request never cuts
a stream short (llama-cpp-python's server ends any running stream when another request arrives,
its `interrupt_requests` default). Its logprobs are OpenAI's shape; it refuses `n` > 1 with a
400, which rung's tiers declare (`n: fan_out`) so that rung asks once per choice.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rung.backends.local.llama_serve")
    parser.add_argument("--model", required=True, help="a .gguf file")
    parser.add_argument("--alias", required=True, help="the model id clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=2048, help="tokens per request (per slot)")
    parser.add_argument("--parallel", type=int, default=1, help="requests decoded together")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    # Each slot gets the whole window: a request that fits `--ctx` is never cut by its neighbours.
    params.n_ctx = args.ctx * args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = True
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = xllamacpp.Server(params)  # loads the model, then listens on a thread of its own
    print(f"listening on {server.listening_address}", flush=True)
    stop.wait()
    print("stopping", flush=True)


if __name__ == "__main__":
    main()
