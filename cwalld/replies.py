"""The AI job — a queue ``Handler``: local safety checks, moderate, write the reply, publish; or,
once every attempt failed, publish with a fallback reply.

The local checks (``safety``) come first and do not depend on the AI: a blocked term rejects the
confession; a crisis phrase puts the help line under whatever reply is published — the model's,
a fallback with no API key, or the fallback after an outage.

When moderation cannot answer (an outage, or no ``/moderations`` on the server),
``[moderation].on_unavailable`` decides: ``publish`` (logged ``published_unmoderated``) or
``hold`` — the confession stays pending for an admin, and the recovery job tries it again later
each time (``storage.hold``).

``run`` raises on an AI failure so the queue retries it. Publishing is one
``UPDATE … WHERE status = 'pending'``, so a job that runs twice (a takeover) stores one reply
and says ``confession_published`` once.
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson
import structlog

from cwalld import language, metrics
from cwalld.ai import AIError, AIPort, Verdict, fallback_reply, with_crisis
from cwalld.cache import Cache
from cwalld.config import Config
from cwalld.domain import PENDING, PUBLISHED, REJECTED, Confession
from cwalld.events import Event, Events
from cwalld.queue import Done
from cwalld.safety import Safety
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.replies")

HOLD_FIRST, HOLD_MAX = 60.0, 3600.0  # seconds until a held confession is tried again: doubling, capped


class Replies:
    def __init__(self, config: Config, storage: Storage, ai: AIPort, cache: Cache, events: Events) -> None:
        self.config, self.storage, self.ai, self.cache, self.events = config, storage, ai, cache, events
        self._safety = Safety(config.safety)

    @property
    def safety(self) -> Safety:
        """The checks for the settings in force (rebuilt after a reload changed them)."""
        if self._safety.settings != self.config.safety:
            self._safety = Safety(self.config.safety)
        return self._safety

    def helped(self, c: Confession, reply: str, crisis: bool = False) -> str:
        """The reply, with the help line under it when the text or moderation says crisis."""
        if crisis or self.safety.crisis(c.content):
            return with_crisis(self.config.ai, reply, self.language(c))
        return reply

    def fallback(self, c: Confession, crisis: bool = False) -> str:
        """The fallback reply for ``c``, in its language, with the help line where it needs one."""
        return self.helped(c, fallback_reply(self.config.ai, c.id, self.language(c)), crisis)

    def language(self, c: Confession) -> str:
        return language.of(c.content, self.config.ai.language)

    async def run(self, confession_id: int) -> Done:
        """Moderate, reply, publish. Raises on AI failure so the queue retries."""
        c = await self._to_answer(confession_id)
        if c is None:
            return "completed"
        if not self.ai.enabled:
            return await self._publish(c, self.fallback(c), fallback=True)
        # Identical text gets the identical outcome: reuse it without calling the API.
        key = "ai:" + hashlib.sha256(" ".join(c.content.split()).encode()).hexdigest()
        cached = await self.cache.get("ai_response", key)
        if cached is not None:
            outcome = orjson.loads(cached)
        else:
            try:
                verdict: Verdict | None = await self.ai.moderate(c.content)
            except AIError as e:
                if e.kind != "not_found":
                    raise  # an outage (tried again) or a failure no retry can help (given up at once)
                verdict = None  # the server has no moderation endpoint: unavailable
            if verdict is None and self.config.moderation.on_unavailable == "hold":
                return await self._hold(c)
            if verdict is not None and verdict.rejected:
                outcome = {"rejected": verdict.rejected}
            else:
                reply = await self.ai.reply(c.content, self.language(c))
                outcome = {"reply": self.helped(c, reply, verdict is not None and verdict.crisis)}
            if verdict is None:
                log.info("published_unmoderated", confession_id=c.id)
            else:  # an unmoderated outcome is not one to reuse
                await self.cache.put(key, orjson.dumps(outcome), self.config.cache.ai_response_ttl)
        if "rejected" in outcome:
            await self._reject(c, outcome["rejected"])
            return "completed"
        return await self._publish(c, outcome["reply"], fallback=False)

    async def give_up(self, confession_id: int) -> Done:
        """Every attempt failed: publish with a fallback reply (moderation honoured if it answers),
        or hold the confession if moderation cannot answer and the config says so."""
        c = await self._to_answer(confession_id)
        if c is None:
            return "completed"
        try:  # half the job's time at most: the fallback must still be stored if the AI is slow
            async with asyncio.timeout(self.config.queue.job_timeout / 2):
                verdict: Verdict | None = await self.ai.moderate(c.content)
        except (AIError, TimeoutError):
            verdict = None
        if verdict is None:
            if self.config.moderation.on_unavailable == "hold":
                return await self._hold(c)
            log.info("published_unmoderated", confession_id=c.id)
            verdict = Verdict()
        if verdict.rejected:
            await self._reject(c, verdict.rejected)
            return "completed"
        return await self._publish(c, self.fallback(c, verdict.crisis), fallback=True)

    async def regenerate(self, confession_id: int) -> str:
        """Ask the AI again for a confession published with a fallback reply (``regenerate``):
        ``replaced``; ``rejected`` if moderation now rejects it (the caller hides it); ``kept`` if
        there is nothing to do; ``failed`` if the AI cannot answer now (run it again later)."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PUBLISHED or not c.ai_fallback or not self.ai.enabled:
            return "kept" if self.ai.enabled else "failed"
        try:
            try:
                verdict = await self.ai.moderate(c.content)
            except AIError as e:
                if e.kind != "not_found" or self.config.moderation.on_unavailable == "hold":
                    raise
                verdict = Verdict()  # no moderation endpoint, and the wall publishes without one
            if verdict.rejected:
                return "rejected"
            reply = self.helped(c, await self.ai.reply(c.content, self.language(c)), verdict.crisis)
        except AIError as e:
            log.info("regenerate_failed", confession_id=c.id, error=str(e))
            return "failed"
        if not await self.storage.replace_fallback(c.id, reply):
            return "kept"  # replaced meanwhile (another run), deleted or hidden
        log.info("reply_regenerated", confession_id=c.id)
        await self.events.emit(Event("reply_regenerated", c.id, c.category))
        return "replaced"

    async def _to_answer(self, confession_id: int) -> Confession | None:
        """The confession if it still waits for an answer and passes the local checks (a blocked
        term rejects it here); None when there is nothing to do."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PENDING:
            return None
        if self.safety.blocked(c.content):
            await self._reject(c, "blocked_term")
            return None
        return c

    async def _hold(self, c: Confession) -> Done:
        retry_at = await self.storage.hold(c.id, HOLD_FIRST, HOLD_MAX)
        if retry_at is not None:
            log.warning("confession_held", confession_id=c.id, reason="moderation_unavailable", retry_at=retry_at)
        return "held"

    async def _reject(self, c: Confession, reason: str) -> None:
        if await self.storage.finish(c.id, REJECTED, None, False, reason):
            log.info("confession_rejected", confession_id=c.id)
            metrics.MODERATION_REJECTIONS.inc()
            await self.events.emit(Event("confession_rejected", c.id, c.category))

    async def _publish(self, c: Confession, reply: str, fallback: bool) -> Done:
        if await self.storage.finish(c.id, PUBLISHED, reply, fallback, None):
            log.info("confession_published", confession_id=c.id, ai_fallback=fallback)
            if fallback:
                metrics.AI_FALLBACKS.inc()
            await self.events.emit(Event("confession_published", c.id, c.category))
        return "fallback" if fallback else "completed"
