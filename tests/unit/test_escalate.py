"""Escalation helpers: what rung asks backends for, what it strips, what it reads from chunks."""

from __future__ import annotations

from typing import Any

import pytest

from rung.router.escalate import (
    body_signals,
    client_wants_logprobs,
    json_expected,
    stream_tokens,
    strip_logprobs,
    with_logprobs,
)

CHAT, LEGACY = "/chat/completions", "/completions"


@pytest.mark.parametrize(
    ("path", "payload", "wants", "sent"),
    [
        (CHAT, {}, False, {"logprobs": True, "top_logprobs": 5}),
        (CHAT, {"logprobs": False}, False, {"logprobs": True, "top_logprobs": 5}),
        (CHAT, {"logprobs": True, "top_logprobs": 2}, True, {"logprobs": True, "top_logprobs": 2}),
        (LEGACY, {}, False, {"logprobs": 5}),
        (LEGACY, {"logprobs": 0}, True, {"logprobs": 0}),
    ],
)
def test_logprobs_are_asked_for_without_overriding_the_client(
    path: str, payload: dict[str, Any], wants: bool, sent: dict[str, Any]
) -> None:
    before = dict(payload)
    assert client_wants_logprobs(path, payload) is wants
    asked = with_logprobs(path, payload)
    assert {k: asked[k] for k in sent} == sent
    assert payload == before  # the client's dict is untouched


def chunk(content: str | None, logprob: float | None = None, finish: str | None = None) -> Any:
    delta = {} if content is None else {"content": content}
    logprobs = None if logprob is None else {"content": [{"token": content, "logprob": logprob}]}
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def test_stream_tokens_counts_text_scores_and_the_end() -> None:
    batch = [chunk("Hel", -0.1), chunk("lo", -2.0), chunk(None, None, "stop")]
    count, scores, text, finished = stream_tokens(batch)
    assert (count, [s.logprob for s in scores], text, finished) == (
        2,
        [-0.1, -2.0],
        "Hello",
        "stop",
    )
    # Without logprobs each content delta counts as a token.
    assert stream_tokens([chunk("a"), chunk("b")])[0] == 2


def test_strip_removes_only_logprobs() -> None:
    batch = [chunk("Hi", -0.5)]
    assert strip_logprobs(batch)[0]["choices"][0] == {
        "index": 0,
        "delta": {"content": "Hi"},
        "logprobs": None,
        "finish_reason": None,
    }


def test_body_signals_reads_chat_and_legacy_answers() -> None:
    chat = {
        "choices": [
            {
                "message": {"content": "{oops"},
                "finish_reason": "length",
                "logprobs": {"content": [{"token": "{", "logprob": -1.5}]},
            }
        ]
    }
    signals = body_signals(chat, json_expected({"response_format": {"type": "json_object"}}))
    assert (signals.tokens, signals.truncated, signals.invalid_json) == (1, True, True)
    legacy = {
        "choices": [
            {
                "text": "Paris",
                "finish_reason": "stop",
                "logprobs": {"tokens": ["Paris"], "token_logprobs": [-0.2]},
            }
        ]
    }
    signals = body_signals(legacy, False)
    assert (signals.tokens, signals.mean_logprob, signals.invalid_json) == (1, -0.2, False)
    assert body_signals({"choices": []}, False).empty
