"""Incremental Server-Sent Events decoding: bytes in, complete `data` payloads out."""

from __future__ import annotations


class SSEDecoder:
    """Feed it raw bytes as they arrive; it returns each event's data once the event is complete.

    Only the `data` field matters for OpenAI-style streams; comments and other fields are skipped.
    Memory is bounded: an event larger than `max_event_bytes` raises ValueError.
    """

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                break
            line, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            event = self._line(line.rstrip(b"\r"))
            if event is not None:
                events.append(event)
        if len(self._buffer) + self._size > self._max:
            raise ValueError("server-sent event exceeds the size limit")
        return events

    def flush(self) -> list[bytes]:
        """Call at end of stream: returns an event that was not followed by a blank line."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._line(b"")
        return events + ([event] if event is not None else [])

    def _line(self, line: bytes) -> bytes | None:
        if not line:
            if not self._data:
                return None
            event = b"\n".join(self._data)
            self._data, self._size = [], 0
            return event
        if line.startswith(b":"):
            return None
        field, _, value = line.partition(b":")
        if field == b"data":
            value = value[1:] if value.startswith(b" ") else value
            self._data.append(value)
            self._size += len(value)
        return None
