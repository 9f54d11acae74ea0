from __future__ import annotations

import pytest

from rung.backends.sse import SSEDecoder


@pytest.mark.parametrize(
    ("pieces", "events"),
    [
        ([b"data: {}\n\n"], [b"{}"]),
        ([b'data: {"a"', b": 1}\n", b"\n"], [b'{"a": 1}']),
        ([b"data: a\r\n\r\ndata: b\r\n\r\n"], [b"a", b"b"]),
        ([b": keep-alive\n\n", b"event: x\nid: 3\ndata: y\n\n"], [b"y"]),
        ([b"data: line1\ndata: line2\n\n"], [b"line1\nline2"]),
        ([b"data:nospace\n\n"], [b"nospace"]),
        ([b"data: [DONE]\n\n"], [b"[DONE]"]),
        ([b"\n\n\n"], []),
        ([b"d", b"a", b"t", b"a", b":", b" ", b"1", b"\n", b"\n"], [b"1"]),
    ],
)
def test_events_are_decoded_however_the_bytes_are_split(pieces, events):
    decoder = SSEDecoder()
    out: list[bytes] = []
    for piece in pieces:
        out += decoder.feed(piece)
    assert out + decoder.flush() == events


def test_flush_returns_an_event_without_its_blank_line():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.flush() == [b"tail"]


def test_an_oversized_event_is_refused():
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(ValueError, match="size limit"):
        decoder.feed(b"data: " + b"x" * 200)
