"""The wall: every use case of one daemon over the same ports, built once by ``app.build``.

Entrypoints (HTTP handlers, the control socket, the queue's consumers, the scheduler) reach the
use cases through it: ``wall.confessions.post(…)``, ``wall.accounts.login(…)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cwalld.accounts import Accounts
from cwalld.ai import AIPort
from cwalld.cache import Cache, Windows
from cwalld.confessions import Confessions, Cursors
from cwalld.config import Config
from cwalld.events import Events
from cwalld.jobs import Jobs
from cwalld.live import Live, LogPort
from cwalld.moderation import Moderation
from cwalld.queue import JobQueue
from cwalld.regenerate import Regenerate
from cwalld.replies import Replies
from cwalld.storage import Storage
from cwalld.views import Views


@dataclass
class Wall:
    config: Config
    storage: Storage
    queue: JobQueue
    cache: Cache
    events: Events
    accounts: Accounts
    confessions: Confessions
    moderation: Moderation
    replies: Replies
    regenerate: Regenerate
    jobs: Jobs
    views: Views
    live: Live

    @classmethod
    def build(cls, config: Config, storage: Storage, queue: JobQueue, ai: AIPort, cache: Cache,
              live_log: LogPort) -> Wall:
        events, cursors = Events(), Cursors()
        confessions = Confessions(config, storage, queue, events, cursors)
        views = Views(confessions, cache, config.cache)
        events.subscribe(views.follow)  # the caches follow every change
        live = Live(config.events, storage, live_log)
        events.subscribe(live.follow)  # and so do the browsers' streams
        replies = Replies(config, storage, ai, cache, events)
        moderation = Moderation(config, storage, events, cursors, replies)
        return cls(config, storage, queue, cache, events,
                   accounts=Accounts(config, storage, events, Windows(cache)),
                   confessions=confessions,
                   moderation=moderation,
                   replies=replies,
                   regenerate=Regenerate(config, storage, queue, replies, moderation),
                   jobs=Jobs(config, storage, queue, events),
                   views=views,
                   live=live)

    async def open(self) -> None:
        """What needs the database (after storage.open): the key that signs page cursors."""
        self.confessions.cursors.key = (await self.storage.secret("cursor_key")).encode()
        self.accounts.counter_key = (await self.storage.secret("counter_key")).encode()

    def reconfigure(self, config: Config) -> None:
        """A reload: every use case reads the new settings from its next call on."""
        self.config = config
        for use_case in (self.accounts, self.confessions, self.moderation, self.replies, self.regenerate, self.jobs):
            use_case.config = config
        self.views.reconfigure(config.cache)
        self.live.settings = config.events
