"""`n` choices joined from single-choice calls, and the check that a stream finished."""

from __future__ import annotations

import pytest

from rung.backends import fanout
from rung.backends.ends import Ends
from rung.errors import BackendError


def _body(text: str, usage: dict[str, int] | None) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_join_numbers_choices_in_call_order_and_adds_usage() -> None:
    joined = fanout.join([_body("a", USAGE), _body("b", USAGE), _body("c", USAGE)])
    assert [(c["index"], c["message"]["content"]) for c in joined["choices"]] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
    ]
    assert joined["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}


@pytest.mark.parametrize(
    "bad", [None, {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2}]
)
def test_one_call_without_valid_usage_makes_the_total_unknown(bad: dict[str, int] | None) -> None:
    joined = fanout.join([_body("a", USAGE), _body("b", bad)])
    assert "usage" not in joined  # unknown, never undercounted


def test_each_call_asks_one_choice_with_its_own_seed() -> None:
    assert fanout.one_choice({"n": 3, "seed": 7}, 2) == {"n": 1, "seed": 9}
    assert fanout.one_choice({"n": 3}, 2) == {"n": 1}
    assert [fanout.wanted(p) for p in ({}, {"n": 1}, {"n": 4}, {"n": True}, {"n": "3"})] == [
        1,
        1,
        4,
        1,
        1,
    ]


def test_renumber_moves_a_stream_to_its_choice_and_takes_usage_out() -> None:
    batch = [
        {"id": "s", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {"id": "s", "choices": [], "usage": USAGE},
    ]
    chunks, usage = fanout.renumber(batch, 2)
    assert chunks == [{"id": "s", "choices": [{"index": 2, "delta": {"content": "hi"}}]}]
    assert usage == USAGE


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([], "without an answer"),
        ([{"choices": [{"index": 0, "delta": {"content": "a"}}]}], "before the answer"),
        ([{"choices": [{"index": 0, "finish_reason": "stop"}]}], None),
        (
            [
                {"choices": [{"index": 0, "delta": {"content": "a"}}]},
                {"choices": [{"index": 1, "delta": {"content": "b"}}]},
                {"choices": [{"index": 0, "finish_reason": "stop"}]},
            ],
            "before the answer",
        ),
        (
            [
                {"choices": [{"index": 1, "finish_reason": "length"}]},
                {"choices": [{"index": 0, "finish_reason": "stop"}]},
                {"choices": [], "usage": USAGE},
            ],
            None,
        ),
    ],
)
def test_a_stream_is_finished_only_when_every_choice_it_opened_is(
    chunks: list[dict[str, object]], error: str | None
) -> None:
    ends = Ends()
    for chunk in chunks:
        ends.see(chunk)
    if error is None:
        ends.check("http://x")
    else:
        with pytest.raises(BackendError, match=error):
            ends.check("http://x")
