"""Coalesced Redis commands: one pipeline for a loop iteration's commands, each caller its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from cwalld.redis_client import Coalesced, connect


async def test_concurrent_commands_share_a_pipeline_and_keep_their_own_answers(own_redis: Any) -> None:
    commands = Coalesced(connect(own_redis.url))
    monitor = connect(own_redis.url)
    try:
        await monitor.set("text", "not a counter")
        results = await asyncio.gather(*(commands.call("INCR", f"n{i % 3}") for i in range(30)),
                                       commands.call("INCR", "text"), return_exceptions=True)
        assert sorted(r for r in results[:30]) == sorted(list(range(1, 11)) * 3)
        assert isinstance(results[30], ResponseError)  # only that caller hears of its error
        assert len(await monitor.client_list()) == 2  # 31 commands at once, one connection: a pipeline
        assert await commands.call("GET", "n0") == b"10"  # a command alone works as well
    finally:
        await commands.aclose()
        await monitor.aclose()


async def test_a_script_survives_redis_losing_its_script_cache(own_redis: Any) -> None:
    commands = Coalesced(connect(own_redis.url))
    try:
        double = commands.script("return tonumber(ARGV[1]) * 2")
        assert await double([], [21]) == 42
        await commands.call("SCRIPT", "FLUSH")  # what a Redis restart does
        assert await asyncio.gather(double([], [1]), double([], [2])) == [2, 4]
    finally:
        await commands.aclose()


async def test_a_lost_connection_is_every_callers_error(own_redis: Any) -> None:
    commands = Coalesced(connect(own_redis.url))
    own_redis.stop()
    try:
        results = await asyncio.gather(*(commands.call("PING") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results)
    finally:
        await commands.aclose()
    with pytest.raises(Exception):
        await connect(own_redis.url).ping()
