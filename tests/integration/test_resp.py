"""rung.resp, the request path's Redis client, against a real redis-server: replies in order under
concurrency, a caller that gives up leaves the others' replies where they belong, scripts load
themselves (also after a restart), AUTH and SELECT from the URL, a frozen Redis is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from rung.ports import wait_for_port
from rung.resp import Client, ReplyError, Script, pairs, parse_url
from tests.redis_server import RedisServer, find_redis_server

pytestmark = pytest.mark.integration

SLOW = Script(
    """
local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
while true do
  local n = redis.call('TIME')
  if tonumber(n[1]) * 1000000 + tonumber(n[2]) >= stop then break end
end
return 'slow'
"""
)


async def test_concurrent_callers_each_get_their_own_reply(redis_server: RedisServer) -> None:
    client = Client(redis_server.url, 1.0)
    try:
        await client.call("DEL", "resp:n")
        replies = await asyncio.gather(*(client.call("INCR", "resp:n") for _ in range(300)))
        assert sorted(replies) == list(range(1, 301))  # one connection, every reply matched
        assert replies == list(range(1, 301))  # and in the order they were sent
        await client.call("HSET", "resp:h", "a", "1", "b", b"\x00\xff")
        assert pairs(await client.call("HGETALL", "resp:h")) == {b"a": b"1", b"b": b"\x00\xff"}
        assert await client.call("GET", "resp:missing") is None
        with pytest.raises(ReplyError, match="unknown command"):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("INCR", "resp:n") == 301  # an error reply kept the stream in step
    finally:
        await client.aclose()


async def test_a_caller_that_gives_up_leaves_its_reply_behind(redis_server: RedisServer) -> None:
    client = Client(redis_server.url, 1.0)
    try:
        await client.call("SET", "resp:k", "mine")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.run(SLOW, [], [300_000])  # Redis busy for 0.3 s
        # Sent behind the abandoned script: must read its own reply, not 'slow'.
        assert await client.call("GET", "resp:k") == b"mine"
        assert await client.run(SLOW, [], [0]) == b"slow"
    finally:
        await client.aclose()


async def test_scripts_load_on_first_use_and_again_after_a_restart() -> None:
    server = RedisServer(find_redis_server()).start()
    again = RedisServer(server.binary, server.port)
    script = Script("return ARGV[1] .. KEYS[1]")
    client = Client(server.url, 1.0)
    try:
        assert await client.run(script, ["k"], ["v"]) == b"vk"  # NOSCRIPT, then EVAL
        assert await client.run(script, ["k"], [1.5]) == b"1.5k"  # by digest now
        server.stop()
        with pytest.raises(RedisConnectionError):
            await client.run(script, ["k"], ["v"])
        again.start()  # a new Redis on the same port: it knows no scripts
        assert await client.run(script, ["k"], ["again"]) == b"againk"
    finally:
        await client.aclose()
        server.stop()
        again.stop()


async def test_password_and_database_come_from_the_url() -> None:
    binary = find_redis_server()
    server = RedisServer(binary)
    command = [binary, "--port", str(server.port), "--bind", "127.0.0.1", "--save", ""]
    auth = [*command, "--requirepass", "s3cret"]
    process = subprocess.Popen(auth, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        wait_for_port(server.port, timeout_s=10)
        client = Client(f"redis://:s3cret@127.0.0.1:{server.port}/3", 1.0)
        await client.call("SET", "resp:db", "three")
        assert await client.call("GET", "resp:db") == b"three"
        await client.aclose()
        default_db = Client(f"redis://:s3cret@127.0.0.1:{server.port}/0", 1.0)
        assert await default_db.call("GET", "resp:db") is None  # SELECT 3 took
        await default_db.aclose()
        wrong = Client(f"redis://:nope@127.0.0.1:{server.port}/0", 1.0)
        with pytest.raises(ReplyError, match=r"WRONGPASS|invalid"):
            await wrong.call("GET", "resp:db")
        await wrong.aclose()
    finally:
        process.terminate()
        process.wait(5)


async def test_a_frozen_redis_connection_is_dropped_once_stale() -> None:
    server = RedisServer(find_redis_server()).start()
    assert server.process is not None
    client = Client(server.url, 0.5, stale_s=0.3)
    try:
        await client.call("SET", "resp:k", "v")
        first = await client.call("CLIENT", "ID")  # Redis numbers each connection
        os.kill(server.process.pid, signal.SIGSTOP)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.call("GET", "resp:k")
        await asyncio.sleep(0.4)  # the unanswered GET is now older than stale_s
        os.kill(server.process.pid, signal.SIGCONT)
        started = time.monotonic()
        assert await client.call("GET", "resp:k") == b"v"  # on a fresh connection
        assert time.monotonic() - started < 1.0
        # The stale connection was dropped, not waited on: this is another one.
        assert await client.call("CLIENT", "ID") != first
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        await client.aclose()
        server.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, False, None, None, 0)),
        ("redis://redis", ("redis", 6379, None, False, None, None, 0)),
        ("redis://:p%40ss@h:7000/2", ("h", 7000, None, False, None, "p@ss", 2)),
        ("rediss://user:pw@h/1", ("h", 6379, None, True, "user", "pw", 1)),
        (
            "unix:///run/redis.sock?db=4",
            ("127.0.0.1", 6379, "/run/redis.sock", False, None, None, 4),
        ),
    ],
)
def test_parse_url(url: str, expected: tuple[object, ...]) -> None:
    a = parse_url(url)
    assert (a.host, a.port, a.path, a.tls, a.username, a.password, a.db) == expected


@pytest.mark.parametrize("url", ["http://h:6379", "redis://h/zero"])
def test_parse_url_refuses_what_is_not_redis(url: str) -> None:
    with pytest.raises(ValueError, match="Redis URL"):
        parse_url(url)


async def test_a_reply_that_came_in_time_wins_over_a_late_loop(redis_server: RedisServer) -> None:
    """A saturated gateway's loop can run a deadline's timer late, in the same turn as the
    reply that beat it. The reply wins: failing it would refuse a metered request (fail_closed)
    that Redis had answered in a millisecond."""
    client = Client(redis_server.url, 0.1)
    try:
        await client.call("SET", "resp:lag", "v")
        task = asyncio.ensure_future(client.call("GET", "resp:lag"))
        await asyncio.sleep(0)  # the GET is on its way
        time.sleep(0.3)  # noqa: ASYNC251  # the loop stalls past the deadline
        assert await task == b"v"
        with pytest.raises(TimeoutError, match=r"no reply within 0\.1s"):  # a real miss fails
            await client.run(SLOW, [], [300_000])
    finally:
        await client.aclose()
