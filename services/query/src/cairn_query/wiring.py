"""The services one QS process holds, built in the lifespan and reached by handlers as `app.state.service`."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import structlog
from cairn_core import Redis

from cairn_query.chat.cache import AnswerCache, Cache, RedisAnswerCache
from cairn_query.chat.pipeline import ChatPipeline
from cairn_query.clients.gateway import GatewayClient
from cairn_query.connectors.service import ConnectorService
from cairn_query.conversations.feedback import Feedback
from cairn_query.conversations.service import Conversations
from cairn_query.corpus.documents import DocumentService
from cairn_query.corpus.parsing import FileParser
from cairn_query.corpus.retrieval import Retriever
from cairn_query.governance.audit import AuditLog
from cairn_query.governance.permissions import PermissionService
from cairn_query.governance.policy import Policy, PolicyError
from cairn_query.governance.policy_file import load_policy
from cairn_query.metrics import QueryMetrics
from cairn_query.settings import QuerySettings
from cairn_query.store import Store

log = structlog.get_logger("policy")


@dataclass
class QueryService:
    settings: QuerySettings
    store: Store
    gateway: GatewayClient
    metrics: QueryMetrics
    retriever: Retriever
    documents: DocumentService
    parser: FileParser
    chat: ChatPipeline
    audit: AuditLog
    conversations: Conversations
    feedback: Feedback
    connectors: ConnectorService
    permissions: PermissionService
    # Reloads one at a time: two loads in threads can end out of order, and the older file would win.
    policy_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(
        cls,
        settings: QuerySettings,
        store: Store,
        gateway: GatewayClient,
        redis: Redis | None = None,
        policy: Policy | None = None,
    ) -> QueryService:
        """`redis`: the lifespan's client when CAIRN_REDIS_URL is set; the answer cache is then shared.
        `policy`: loaded by the caller (it may import a classifier: seconds); None loads it here."""
        metrics = QueryMetrics()
        audit = AuditLog(settings, store, metrics)
        retriever = Retriever(settings, store, gateway, metrics)
        cache: Cache = (
            RedisAnswerCache(redis, settings.cache_ttl_s)
            if redis is not None and settings.cache_size
            else AnswerCache(settings.cache_size, settings.cache_ttl_s)  # size 0: stores nothing
        )
        documents = DocumentService(settings, store, gateway, metrics)
        parser = FileParser.from_settings(settings)
        return cls(
            settings=settings,
            store=store,
            gateway=gateway,
            metrics=metrics,
            retriever=retriever,
            documents=documents,
            parser=parser,
            chat=ChatPipeline(
                settings,
                store,
                retriever,
                gateway,
                cache,
                metrics,
                policy or load_policy(settings.policy_file),
            ),
            audit=audit,
            conversations=Conversations(store),
            feedback=Feedback(store, audit, metrics),
            connectors=ConnectorService(settings, store, documents, parser),
            permissions=PermissionService(store, audit),
        )

    async def reload_policy(self) -> Policy:
        """Load the policy file again and use it from the next answer on; a broken file raises PolicyError
        and the policy in force stays."""
        async with self.policy_lock:
            try:
                policy = await asyncio.to_thread(load_policy, self.settings.policy_file)
            except PolicyError as exc:
                self.metrics.policy_reloads.labels("refused").inc()
                log.error("policy_refused", error=str(exc))
                raise
            self.chat.policy = policy
        self.metrics.policy_reloads.labels("ok").inc()
        log.info("policy_loaded", **policy.summary())
        return policy

    async def watch_policy(self) -> None:
        """Reload the policy file when it changes (mtime and size); the lifespan runs this while the app lives."""
        path, every = self.settings.policy_file, self.settings.policy_watch_s
        assert path and every, "app.py runs the watch only for a policy file with a period"

        def stamp() -> tuple[int, int] | None:
            try:
                st = os.stat(path)
            except OSError:
                return None
            return st.st_mtime_ns, st.st_size

        # A file is read once its stamp has held for a whole period: an editor (or `write_text`) truncates
        # before it writes, and the empty file in between is a valid policy with no rules.
        seen = loaded = stamp()
        while True:
            await asyncio.sleep(every)
            now = stamp()
            if now != seen:
                seen = now
                continue
            if now is not None and now != loaded:
                loaded = now
                try:
                    await self.reload_policy()
                except PolicyError:
                    pass  # logged and counted by reload_policy; the old policy stays
                except Exception as exc:  # a bug in loading must not end the watch: the next edit is read
                    log.exception("policy_watch_failed", error=f"{type(exc).__name__}: {exc}")
