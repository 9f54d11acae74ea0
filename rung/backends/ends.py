"""Whether a streamed answer was finished, judged from its chunks."""

from __future__ import annotations

from typing import Any

from rung.errors import BackendError


class Ends:
    """Whether a stream finished its answer: every choice it opened must close with a
    `finish_reason` before `[DONE]`. A server that stops early and still sends `[DONE]` (as
    llama-cpp-python's does when another request interrupts it) has not answered: that is a
    backend failure, never a short success."""

    __slots__ = ("finished", "opened")

    def __init__(self) -> None:
        self.opened: set[int] = set()
        self.finished: set[int] = set()

    def see(self, chunk: dict[str, Any]) -> None:
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else 0
            self.opened.add(index)
            if choice.get("finish_reason") is not None:
                self.finished.add(index)

    def check(self, url: str) -> None:
        if not self.opened:
            raise BackendError(f"{url} ended its stream without an answer")
        if self.opened - self.finished:
            raise BackendError(f"{url} ended its stream before the answer was finished")
