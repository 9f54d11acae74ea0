from __future__ import annotations

import pytest

from rung.errors import InvalidRequest
from rung.router.schemas import (
    ChatRequest,
    CompletionRequest,
    prompt_chars,
    routing_text,
    validate,
)


def chat(*messages: dict[str, object]) -> ChatRequest:
    return validate(ChatRequest, {"model": "rung", "messages": list(messages)})


def test_routing_text_is_the_last_user_message_then_what_it_follows():
    request = chat(
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "second"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
    )
    assert routing_text(request) == "second\n\nfirst"  # newest first, no image, no replies
    assert routing_text(chat({"role": "user", "content": "alone"})) == "alone"
    turns = [{"role": "user", "content": f"turn {i} " + "x" * 900} for i in range(6)]
    text = routing_text(chat(*turns))
    assert text.startswith("turn 5 ")
    assert "turn 3 " in text
    assert "turn 2 " not in text
    assert len(text) == 2000  # bounded
    assert prompt_chars(request) == len("sys") + len("first") + len("reply") + len("second")


def test_routing_text_without_a_user_message_uses_the_last_message():
    assert routing_text(chat({"role": "system", "content": "only system"})) == "only system"


def test_completion_prompts():
    single = validate(CompletionRequest, {"model": "rung", "prompt": "abc"})
    several = validate(CompletionRequest, {"model": "rung", "prompt": ["ab", "cd"]})
    tokens = validate(CompletionRequest, {"model": "rung", "prompt": [1, 2, 3]})
    assert (routing_text(single), routing_text(several), routing_text(tokens)) == (
        "abc",
        "ab\ncd",
        "",
    )
    assert prompt_chars(several) == 5


def test_unknown_parameters_are_kept_for_the_backend():
    request = validate(
        ChatRequest,
        {"model": "rung", "messages": [{"role": "user"}], "top_k": 5, "repetition_penalty": 1.1},
    )
    assert request.model_extra == {"top_k": 5, "repetition_penalty": 1.1}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "rung", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        (
            {"model": "rung", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 30},
            "top_logprobs",
        ),
        ({"model": "rung", "messages": [{"role": "user", "content": "x"}], "stop": 3}, "stop"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "rung", "messages": [{"content": "x"}]}, "messages[0].role"),
    ],
)
def test_invalid_values_name_the_parameter(body, param):
    with pytest.raises(InvalidRequest) as excinfo:
        validate(ChatRequest, body)
    assert excinfo.value.param == param
