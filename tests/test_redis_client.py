"""Our Redis client: one write for a loop iteration's commands, each caller its own answer, and every
wait bounded: a lost, silent or restarted Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cwalld.redis_client import Coalesced
from tests.conftest import RedisServer
from tests.proxy import SilentProxy


@pytest.fixture
async def commands(own_redis: Any) -> Any:
    client = Coalesced(own_redis.url)
    yield client
    await client.aclose()


async def test_concurrent_commands_share_a_write_and_keep_their_own_answers(own_redis: Any,
                                                                          commands: Coalesced) -> None:
    monitor = aioredis.from_url(own_redis.url)
    try:
        await monitor.set("text", "not a counter")
        results = await asyncio.gather(*(commands.call("INCR", f"n{i % 3}") for i in range(30)),
                                       commands.call("INCR", "text"), return_exceptions=True)
        assert sorted(r for r in results[:30]) == sorted(list(range(1, 11)) * 3)
        assert isinstance(results[30], ResponseError)  # only that caller hears of its error
        assert len(await monitor.client_list()) == 2  # 31 commands at once, one connection
        assert await commands.call("GET", "n0") == b"10"  # a command alone works as well
    finally:
        await monitor.aclose()


async def test_a_script_survives_redis_losing_its_script_cache(commands: Coalesced) -> None:
    double = commands.script("return tonumber(ARGV[1]) * 2")
    assert await double([], [21]) == 42
    await commands.call("SCRIPT", "FLUSH")  # what a Redis restart does
    assert await asyncio.gather(double([], [1]), double([], [2])) == [2, 4]


async def test_a_lost_connection_is_every_callers_error(own_redis: Any, commands: Coalesced) -> None:
    own_redis.stop()
    results = await asyncio.gather(*(commands.call("PING") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results


async def test_a_silent_redis_fails_every_waiting_call_after_the_timeout_and_the_next_call_connects_anew(
        own_redis: Any) -> None:
    """The connection is ours now: an answer that never comes (no FIN, no RST) must still end
    every caller's wait, and a healed path must be used again without a restart."""
    proxy = SilentProxy(own_redis.port)
    await proxy.start()
    commands = Coalesced(proxy.url, timeout=0.5)
    try:
        assert await commands.call("PING") == b"PONG"
        proxy.silence()
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(commands.call("INCR", "n") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert 0.4 < asyncio.get_running_loop().time() - started < 1.5
        proxy.heal()
        assert await commands.call("PING") == b"PONG"
    finally:
        await commands.aclose()
        await proxy.stop()


async def test_after_redis_restarts_the_next_call_connects_again(own_redis: Any, commands: Coalesced) -> None:
    assert await commands.call("SET", "k", 1) == b"OK"
    own_redis.stop()
    with pytest.raises(RedisConnectionError):
        await commands.call("GET", "k")
    own_redis.start()
    assert await commands.call("PING") == b"PONG"


async def test_user_password_and_db_from_the_url(tmp_path: Any) -> None:
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    server.start()
    try:
        right = Coalesced(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        assert await right.call("SET", "here", 1) == b"OK"
        assert server.cli("-a", "s3cret", "--no-auth-warning", "-n", "3", "GET", "here") == "1"
        await right.aclose()
        wrong = Coalesced(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(RedisConnectionError, match="WRONGPASS"):  # said as it is, not a hang
            await wrong.call("PING")
        await wrong.aclose()
    finally:
        server.stop()


async def test_a_caller_that_gives_up_does_not_shift_the_answers_of_the_others(commands: Coalesced) -> None:
    slow = asyncio.ensure_future(commands.call("BLPOP", "nothing", 0.3))
    quick = commands.call("ECHO", "mine")
    slow.cancel()
    assert await quick == b"mine"  # Redis answers in order: the cancelled reply is dropped, not handed on
    assert await commands.call("ECHO", "next") == b"next"


async def test_a_call_within_a_bound_times_out_alone_and_its_late_answer_is_dropped(commands: Coalesced) -> None:
    await commands.call("SET", "k", "v")
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = asyncio.ensure_future(commands.within(
        0.05, "EVAL", "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
        "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 150000 return 'late'", 0))
    after = asyncio.ensure_future(commands.within(5, "GET", "k"))  # answered after the slow one, on the same connection
    with pytest.raises(TimeoutError):
        await slow
    assert loop.time() - started >= 0.05  # its bound: the answer itself (0.15 s) never reached it
    assert await after == b"v"
    assert await commands.within(0.5, "GET", "k") == b"v"  # the connection stays in step


async def test_closing_while_a_connection_is_being_made_leaves_nothing_running(own_redis: Any) -> None:
    """A close during the connect returned after ``wait`` with the connect still going on: a
    connection made after the close would have been left open, its task pending."""
    proxy = SilentProxy(own_redis.port)
    await proxy.start()
    proxy.silence()
    commands = Coalesced(proxy.url.removesuffix("/0") + "/1", connect_timeout=1.0)  # SELECT 1 is never answered
    try:
        call = commands.call("PING")
        await asyncio.sleep(0.1)  # the connect is under way
        await commands.aclose(wait=0.1)
        assert [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Coalesced._connect"] == []
        with pytest.raises(RedisTimeoutError):
            await call
    finally:
        await proxy.stop()
