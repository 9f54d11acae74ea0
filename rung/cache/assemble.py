"""Streamed chunks back into the completion they spell, so a streamed answer can be cached (and
later replayed as JSON or as a stream). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class StreamAssembler:
    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.chat = True
        self.broken = False

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if not isinstance(chunk, Mapping) or "error" in chunk:
            self.broken = True
            return
        if not self.head:
            self.chat = chunk.get("object") == "chat.completion.chunk"
            self.head = {k: chunk.get(k) for k in ("id", "created", "model")}
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            into = self.choices.setdefault(
                index, {"text": [], "tools": {}, "role": "assistant", "finish": None, "lp": []}
            )
            if choice.get("finish_reason") is not None:
                into["finish"] = choice["finish_reason"]
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, Mapping) and isinstance(logprobs.get("content"), list):
                into["lp"] += logprobs["content"]
            if not self.chat:
                into["text"].append(choice.get("text") or "")
                continue
            delta = choice.get("delta") or {}
            into["role"] = delta.get("role") or into["role"]
            if delta.get("content"):
                into["text"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = into["tools"].setdefault(
                    int(call.get("index", 0)),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> dict[str, Any] | None:
        """The whole completion, or None if the stream broke or said nothing."""
        if self.broken or not self.choices:
            return None
        choices = []
        for index in sorted(self.choices):
            part = self.choices[index]
            logprobs = {"content": part["lp"]} if part["lp"] else None
            if self.chat:
                message: dict[str, Any] = {"role": part["role"], "content": "".join(part["text"])}
                if part["tools"]:
                    message["tool_calls"] = [part["tools"][i] for i in sorted(part["tools"])]
                    message["content"] = message["content"] or None
                choice = {"index": index, "message": message, "logprobs": logprobs}
            else:
                choice = {"index": index, "text": "".join(part["text"]), "logprobs": logprobs}
            choices.append({**choice, "finish_reason": part["finish"]})
        body = {
            **self.head,
            "object": "chat.completion" if self.chat else "text_completion",
            "choices": choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body
