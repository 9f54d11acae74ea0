"""`python -m rung.backends.local.llama_serve ARGS`: llama-cpp-python's OpenAI server, with
top-logprobs computed in linear time.

llama-cpp-python builds each token's `top_logprobs` by sorting the whole vocabulary as Python
tuples (`sorted(zip(logprobs, range(n_vocab)), reverse=True)`, then keeping the first k): ~140 ms
per token for Qwen2.5's 152k-token vocabulary, which made an answer with logprobs 6-7x slower
than one without (measured: 200 tokens in 7.2 s without, 50.7 s with). Confidence-based
escalation asks for logprobs on every call, so this entry point replaces that one `sorted` name in
`llama_cpp.llama` with a partial selection (numpy `argpartition`) that returns the same leading
entries in the same order. Anything that is not exactly that call shape goes to the builtin.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

TOP = 64
"""Entries kept (OpenAI allows at most 20 top_logprobs; the server slices the first k)."""


def _vocab_values(iterable: Any) -> Any | None:
    """For `zip(values, range(n))`, the values (a list or a 1-D array); else None."""
    if type(iterable) is not zip:
        return None
    reduced: Any = iterable.__reduce__()  # (zip, iterators[, strict])
    parts = reduced[1]
    if len(parts) != 2:
        return None
    values_it, index_it = parts
    reduced_values = values_it.__reduce__()
    reduced_index = index_it.__reduce__()
    # A fresh iterator reduces to (iter, (container,)) or (iter, (container,), position).
    if len(reduced_values) < 2 or len(reduced_index) < 2:
        return None
    if reduced_values[2:] not in ((), (0,)) or reduced_index[2:] not in ((), (0,)):
        return None
    values = reduced_values[1][0]
    index = reduced_index[1][0] if reduced_index[1] else None
    if not isinstance(index, range) or index != range(len(values)):
        return None
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    if isinstance(values, list) and values and type(values[0]) is float:
        return values
    return None


def top_sorted(
    iterable: Iterable[Any], /, *, key: Callable[..., Any] | None = None, reverse: bool = False
) -> list[Any]:
    """`sorted`, except that `sorted(zip(values, range(n)), reverse=True)` over a vocabulary
    returns only its first TOP entries, found in linear time."""
    try:
        values = _vocab_values(iterable) if reverse and key is None else None
    except (TypeError, ValueError, IndexError):  # an iterator that reduces differently
        values = None
    if values is None or len(values) <= TOP:
        return builtins.sorted(iterable, key=key, reverse=reverse)
    array = np.asarray(values)
    top = np.argpartition(array, len(array) - TOP)[-TOP:]
    # Same order as the full sort: by value, then by index, both descending.
    order = sorted(((array[i], int(i)) for i in top), reverse=True)
    return [(values[i], i) for _, i in order]


def main() -> None:
    import llama_cpp.llama
    from llama_cpp.server.__main__ import main as serve

    llama_cpp.llama.sorted = top_sorted  # type: ignore[attr-defined]
    sys.argv[0] = "llama_cpp.server"
    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
