"""The OpenAI wire format: request validation (typed, strict) and the shapes rung sends back.

Validation checks what rung and OpenAI agree on; the client's original JSON object is what gets
forwarded, so parameters rung does not know (e.g. vLLM's `top_k`) still reach the backend.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rung.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Message(_Open):
    role: Role
    content: str | list[dict[str, Any]] | None = None


class _Sampling(_Open):
    model: str = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=1, le=128)
    """vLLM's (and legacy completions'): every candidate costs, so reservations count it."""
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    stream_options: dict[str, Any] | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


M = TypeVar("M", bound="_Sampling")


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = None
    suffix: str | None = None


def _param(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"str", "list[dict[str,any]]", "list[str]", "list[int]", "list[list[int]]"}:
            continue  # pydantic's union-member labels are noise to a client
        else:
            text += f".{part}" if text else part
    return text


def validate(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(tuple(first["loc"]))
        if first["type"] == "missing":
            message = f"missing required parameter: '{param}'"
        elif first["type"] == "literal_error" and param.endswith(".role"):
            message = f"invalid role at '{param}': expected one of {', '.join(ROLES)}"
        else:
            message = f"invalid value for '{param}': {first['msg']}"
        raise InvalidRequest(message, param=param) from None


ROUTING_TURNS = 3
ROUTING_CHARS = 2000


def routing_text(request: ChatRequest | CompletionRequest) -> str:
    """The text a router judges: the prompt; for a chat, the last user message followed by up to
    two earlier ones, newest first (a follow-up such as "and in Python?" is judged with what it
    follows), at most ROUTING_CHARS characters. Image parts are never part of it."""
    if isinstance(request, CompletionRequest):
        prompt = request.prompt
        if isinstance(prompt, str):
            return prompt
        return "\n".join(p for p in prompt if isinstance(p, str))
    asked = [_content_text(m.content) for m in reversed(request.messages) if m.role == "user"]
    if not asked:
        return _content_text(request.messages[-1].content)
    if len(asked) == 1:
        return asked[0]
    return "\n\n".join(asked[:ROUTING_TURNS])[:ROUTING_CHARS]


def prompt_chars(request: ChatRequest | CompletionRequest) -> int:
    if isinstance(request, CompletionRequest):
        return len(routing_text(request))
    return sum(len(_content_text(m.content)) for m in request.messages)


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
