"""A fake OpenAI-compatible server: the one stand-in the tests allow (the real AI is paid).

The real ``openai`` client talks to it over HTTP. Tests steer it:
- ``latency``: seconds every answer waits;
- ``script``: what the next chat calls do, one entry per call — an HTTP status (500, 429, …),
  a status with headers (``(429, {"Retry-After": "2"})``), or "hang" (never answers in time);
  ``moderation_script`` the same for /moderations (404 plays a server without that endpoint);
- a confession containing ``[flag:CATEGORY]`` (e.g. ``[flag:hate]``, ``[flag:self-harm]``) is
  flagged for that category by ``/moderations``;
- ``calls`` counts requests per endpoint; ``prompts`` keeps each chat call's system prompt, ``asked`` its confession,
  ``moderated`` each /moderations request's inputs.

Run alone for manual tries and benchmarks: ``python tests/fake_openai.py --port 8700``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter, deque

import orjson
import uvloop
from aiohttp import web

CATEGORIES = [
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
]
FLAG = re.compile(r"\[flag:([a-z/-]+)\]")


class FakeOpenAI:
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.script: deque[int | str | tuple[int, dict[str, str]]] = deque()
        self.moderation_script: deque[int | str | tuple[int, dict[str, str]]] = deque()
        self.calls: Counter[str] = Counter()
        self.call_times: list[float] = []
        self.prompts: list[str] = []
        self.asked: list[str] = []
        self.moderated: list[list[str]] = []  # each /moderations request's inputs
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_post("/v1/moderations", self.moderations)
        self.app.router.add_get("/v1/models", self.models)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scripted(self, script: deque[int | str | tuple[int, dict[str, str]]]) -> web.Response | None:
        if self.latency:
            await asyncio.sleep(self.latency)
        if not script:
            return None
        step = script.popleft()
        if step == "hang":
            await asyncio.sleep(3600)
        if isinstance(step, tuple):
            status, headers = step
        else:
            status = int(step)
            headers = {"retry-after-ms": "10"} if status == 429 else {}
        return _json({"error": {"message": f"scripted {status}", "type": "fake"}}, status=status, headers=headers)

    async def chat(self, request: web.Request) -> web.Response:
        self.calls["chat"] += 1
        self.call_times.append(time.monotonic())
        body = orjson.loads(await request.read())
        self.prompts += [m["content"] for m in body["messages"] if m["role"] == "system"]
        self.asked += [m["content"] for m in body["messages"] if m["role"] == "user"]
        scripted = await self._scripted(self.script)
        if scripted is not None:
            return scripted
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text = f"Seni duyuyoruz. ({len(user)} karakterlik itirafına yapay zekâ yanıtı)"
        return _json({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    async def moderations(self, request: web.Request) -> web.Response:
        self.calls["moderations"] += 1
        body = orjson.loads(await request.read())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.moderated.append(inputs)
        scripted = await self._scripted(self.moderation_script)
        if scripted is not None:
            return scripted
        results = []
        for text in inputs:
            flagged = set(FLAG.findall(text))
            results.append({
                "flagged": bool(flagged),
                "categories": {c: c in flagged for c in CATEGORIES},
                "category_scores": {c: 0.99 if c in flagged else 0.001 for c in CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
            })
        return _json({"id": "modr-fake", "model": body.get("model", "x"), "results": results})

    async def models(self, request: web.Request) -> web.Response:
        self.calls["models"] += 1
        return _json({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model",
                                                              "created": 0, "owned_by": "fake"}]})


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # orjson, not aiohttp's json.dumps: in `make bench` this server shares the machine with the
    # daemon, and its CPU is not the daemon's (a real AI answers from elsewhere).
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args()
    fake = FakeOpenAI(args.latency)
    uvloop.install()  # as lean as it can be: in `make bench` its CPU comes out of the daemon's machine
    web.run_app(fake.app, host=args.host, port=args.port, access_log=None, print=lambda *_: None)


if __name__ == "__main__":
    main()
