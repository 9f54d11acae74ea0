"""Pure cache rules: request scoping, the near-miss guard, what may be stored, stream replay."""

from __future__ import annotations

from typing import Any

import pytest

from rung.cache.guard import near_miss, salient
from rung.cache.keys import cache_key
from rung.cache.policy import directives, replay, why_not_store

CHAT = "/chat/completions"


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "rung", "messages": list(messages), **params}


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def key(payload: dict[str, Any], path: str = CHAT) -> Any:
    found = cache_key(path, payload)
    assert found is not None
    return found


def test_the_scope_is_everything_but_the_last_user_message() -> None:
    base = key(chat(user("What is 2+2?")))
    assert base.text == "What is 2+2?"
    assert key(chat(user("What is 3+3?"))).scope == base.scope
    # Streaming, the end-user id and the routed alias do not change an answer.
    same = chat(user("x"), stream=True, user="u1", stream_options={"include_usage": True})
    assert key(same).scope == base.scope
    assert key({**chat(user("x")), "model": "auto"}).scope == base.scope
    # Everything else does.
    for other in (
        chat({"role": "system", "content": "Be terse."}, user("What is 2+2?")),
        chat(user("earlier"), {"role": "assistant", "content": "ok"}, user("What is 2+2?")),
        chat(user("What is 2+2?"), temperature=0.5),
        chat(user("What is 2+2?"), max_tokens=5),
        chat(user("What is 2+2?"), seed=1),
        chat(user("What is 2+2?"), logprobs=True),
        chat(user("What is 2+2?"), top_k=5),  # unknown parameters separate entries too
        chat(user("What is 2+2?"), response_format={"type": "json_object"}),
        {**chat(user("What is 2+2?")), "model": "small"},  # pinned vs routed
    ):
        assert key(other).scope != base.scope
    assert key({"model": "rung", "prompt": "What is 2+2?"}, "/completions").scope != base.scope


def test_exact_keys_differ_with_the_text_and_only_text_parts_are_keyed() -> None:
    a, b = key(chat(user("hi"))), key(chat(user("hi!")))
    assert a.scope == b.scope
    assert a.exact != b.exact
    parts = chat(user([{"type": "text", "text": "hi"}]))
    assert key(parts).text == "hi"
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    assert cache_key(CHAT, chat(user([{"type": "text", "text": "hi"}, image]))) is None
    assert cache_key(CHAT, chat({"role": "system", "content": "no user"})) is None
    assert cache_key("/completions", {"model": "rung", "prompt": ["a", "b"]}) is None


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        # numbers
        ("Janet has 16 eggs. How many?", "Janet has 17 eggs. How many?", "numbers"),
        ("Janet has sixteen eggs. How many?", "How many? Janet has 16 eggs.", None),
        ("It costs $1,000 in total.", "The total is 1000 dollars.", None),
        ("Add 2.50 and 3", "Add 2.5 and 3", None),
        ("What is 3 - 5?", "What is 5 - 3?", None),  # same multiset: order is the embedding's job
        ("Split 10 apples among 4 kids", "Split 10 apples among 5 kids", "numbers"),
        # digits inside words
        ("How many cores does the ryzen5 have?", "How many cores does the ryzen9 have?", "numbers"),
        ("What does error E404 mean?", "What does error E502 mean?", "numbers"),
        ("Install pip for python2", "Install pip for python3", "numbers"),
        ("Summarise soak4", "Summarise soak2", "numbers"),
        ("Play the mp3 file", "Play that mp3 file", None),
        # option letters
        ("Why is B correct?", "Why is C correct?", "letters"),
        ("Is (A) the answer?", "Is (D) the answer?", "letters"),
        ("Why is option B right?", "Why is answer B right?", None),
        # quoted strings and code
        ('Translate "good morning" to French', 'Translate "good night" to French', "quoted"),
        ("What does `x = 1` print?", "What does `x = 2` print?", "code"),
        ("What does `x  =  1` print?", "Explain what `x = 1` prints.", None),
        # negation
        ("Which of these is not a mammal?", "Which of these is a mammal?", "negation"),
        ("Why isn't the sky green?", "Why is the sky not green?", None),
        # names and entities
        ("What is the capital of France?", "What is the capital of Germany?", "entities"),
        ("What is the capital of France?", "Tell me the capital city of France.", None),
        ("Who wrote Hamlet?", "Who is the author of Hamlet?", None),
        ("Tell me the capital of France.", "Tell me France's capital.", None),
        ("Is NASA older than ESA?", "Is NASA older than JAXA?", "entities"),
        ("How do I sort a list in Python?", "How can I sort a Python list?", None),
        (
            "Convert 100 degrees Fahrenheit to Celsius.",
            "Convert 100 degrees Celsius to Fahrenheit.",
            "entities",
        ),
        (
            "Pick one.\nA. red apple\nB. green pear",
            "Pick one.\nA. red apple\nB. green plum",
            "choices",
        ),
        (
            "Pick one.\nA. red apple\nB. green pear",
            "Choose one:\nA. red apple\nB. green pear",
            None,
        ),
    ],
)
def test_near_miss_guard(a: str, b: str, why: str | None) -> None:
    assert near_miss(a, b) == why
    assert near_miss(b, a) == why


def test_salient_parts() -> None:
    parts = salient('Ask "Bob" in Paris about `ls -la`: he never owes 3,000.50 or twelve.')
    assert parts.numbers == ("12", "3000.5")
    assert parts.quoted == frozenset({"bob"})
    assert parts.code == frozenset({"ls -la"})
    assert parts.negations == 1
    assert parts.entities == ("bob", "paris")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (True, True)),
        ("no-cache", (False, True)),
        ("no-store", (False, False)),
        ("max-age=0, No-Cache", (False, True)),
    ],
)
def test_cache_control(header: str | None, expected: tuple[bool, bool]) -> None:
    assert directives(header) == expected


def answer(content: str = "4", finish: str = "stop") -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {"object": "chat.completion", "choices": [{"message": message, "finish_reason": finish}]}


@pytest.mark.parametrize(
    ("payload", "body", "why"),
    [
        ({}, answer(), None),  # no temperature = 1.0 = the default limit
        ({"temperature": 0}, answer(), None),
        ({"temperature": 1.2}, answer(), "temperature"),
        ({"n": 2}, answer(), "n>1"),
        ({}, answer(finish="length"), "truncated"),
        ({}, answer(finish="content_filter"), "finish:content_filter"),
        ({}, answer(content="  "), "empty"),
        ({}, {"choices": []}, "no-answer"),
    ],
)
def test_what_may_be_stored(payload: dict[str, Any], body: dict[str, Any], why: str | None) -> None:
    assert why_not_store(payload, body, max_temperature=1.0) == why


def test_a_stricter_temperature_limit() -> None:
    assert why_not_store({}, answer(), max_temperature=0.0) == "temperature"
    assert why_not_store({"temperature": 0.0}, answer(), max_temperature=0.0) is None


def test_replay_rebuilds_a_chat_stream() -> None:
    body = {**answer("Paris"), "id": "c1", "created": 7, "model": "m", "usage": {"total_tokens": 3}}
    chunks = replay(body, include_usage=True)
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Paris"}
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[2] == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": [],
        "usage": {"total_tokens": 3},
    }
    assert len(replay(body, include_usage=False)) == 2
    legacy = {"object": "text_completion", "choices": [{"text": "Hi", "finish_reason": "stop"}]}
    assert [c["choices"][0]["text"] for c in replay(legacy, False)] == ["Hi", ""]


def test_stream_assembler_rebuilds_what_replay_takes_apart() -> None:
    from rung.cache.assemble import StreamAssembler

    body = {
        **answer("Paris is the capital."),
        "id": "c1",
        "created": 7,
        "model": "m",
        "usage": {"total_tokens": 9},
    }
    body["choices"][0] |= {"index": 0, "logprobs": None}
    assembler = StreamAssembler()
    for chunk in replay(body, include_usage=True):
        assembler.feed(chunk)
    assert assembler.result() == body


def test_stream_assembler_joins_deltas_and_tool_calls() -> None:
    from rung.cache.assemble import StreamAssembler

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [choice]}  # fmt: skip

    call = {"index": 0, "id": "t1", "function": {"name": "get_", "arguments": '{"a":'}}
    more = {"index": 0, "function": {"name": "weather", "arguments": " 1}"}}
    assembler = StreamAssembler()
    for part in (
        chunk({"role": "assistant", "content": "Pa"}),
        chunk({"content": "ris"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [more]}, "tool_calls"),
    ):
        assembler.feed(part)
    result = assembler.result()
    assert result is not None
    message = result["choices"][0]["message"]
    assert message["content"] == "Paris"
    assert message["tool_calls"] == [
        {
            "id": "t1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"a": 1}'},
        }
    ]
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    broken = StreamAssembler()
    broken.feed(chunk({"content": "Pa"}))
    broken.feed({"error": {"message": "the model server failed mid-stream"}})
    assert broken.result() is None
