"""The AI job — a queue ``Handler``: local safety checks, moderate, write the reply, publish; or,
once every attempt failed, publish with a fallback reply.

The local checks (``safety``) come first and do not depend on the AI: a blocked term rejects the
confession; a crisis phrase puts the help line under whatever reply is published — the model's,
a fallback with no API key, or the fallback after an outage.

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
from cwalld.safety import Safety
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.replies")


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

    def _helped(self, c: Confession, reply: str, crisis: bool) -> str:
        """The reply, with the help line under it when the text or moderation says crisis."""
        if crisis or self.safety.crisis(c.content):
            return with_crisis(self.config.ai, reply, self._language(c))
        return reply

    def _fallback(self, c: Confession) -> str:
        return fallback_reply(self.config.ai, c.id, self._language(c))

    def _language(self, c: Confession) -> str:
        return language.of(c.content, self.config.ai.language)

    async def run(self, confession_id: int) -> None:
        """Moderate, reply, publish. Raises on AI failure so the queue retries."""
        c = await self._to_answer(confession_id)
        if c is None:
            return
        if not self.ai.enabled:
            await self._publish(c, self._helped(c, self._fallback(c), False), fallback=True)
            return
        # Identical text gets the identical outcome: reuse it without calling the API.
        key = "ai:" + hashlib.sha256(" ".join(c.content.split()).encode()).hexdigest()
        cached = await self.cache.get("ai_response", key)
        if cached is not None:
            outcome = orjson.loads(cached)
        else:
            verdict = await self.ai.moderate(c.content)
            if verdict.rejected:
                outcome = {"rejected": verdict.rejected}
            else:
                reply = await self.ai.reply(c.content, self._language(c))
                outcome = {"reply": self._helped(c, reply, verdict.crisis)}
            await self.cache.put(key, orjson.dumps(outcome), self.config.cache.ai_response_ttl)
        if "rejected" in outcome:
            await self._reject(c, outcome["rejected"])
            return
        await self._publish(c, outcome["reply"], fallback=False)

    async def give_up(self, confession_id: int) -> None:
        """Every attempt failed: publish with a fallback reply (moderation honoured if it answers)."""
        c = await self._to_answer(confession_id)
        if c is None:
            return
        reply = self._fallback(c)
        try:  # half the job's time at most: the fallback must still be stored if the AI is slow
            async with asyncio.timeout(self.config.queue.job_timeout / 2):
                verdict = await self.ai.moderate(c.content)
        except (AIError, TimeoutError):
            verdict = Verdict()  # moderation is down too: publish, as with any AI outage
        if verdict.rejected:
            await self._reject(c, verdict.rejected)
            return
        await self._publish(c, self._helped(c, reply, verdict.crisis), fallback=True)

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

    async def _reject(self, c: Confession, reason: str) -> None:
        if await self.storage.finish(c.id, REJECTED, None, False, reason):
            log.info("confession_rejected", confession_id=c.id)
            metrics.MODERATION_REJECTIONS.inc()
            await self.events.emit(Event("confession_rejected", c.id, c.category))

    async def _publish(self, c: Confession, reply: str, fallback: bool) -> None:
        if await self.storage.finish(c.id, PUBLISHED, reply, fallback, None):
            log.info("confession_published", confession_id=c.id, ai_fallback=fallback)
            if fallback:
                metrics.AI_FALLBACKS.inc()
            await self.events.emit(Event("confession_published", c.id, c.category))
