"""The services one QS process holds, built in the lifespan and reached by handlers as `app.state.service`."""

from __future__ import annotations

from dataclasses import dataclass

from cairn_core import Redis

from .cache import AnswerCache, Cache, RedisAnswerCache
from .chat import ChatService
from .documents import DocumentService
from .gateway import GatewayClient
from .metrics import QueryMetrics
from .parsing import FileParser
from .retrieval import Retriever
from .settings import QuerySettings
from .store import Store


@dataclass
class QueryService:
    settings: QuerySettings
    store: Store
    gateway: GatewayClient
    metrics: QueryMetrics
    retriever: Retriever
    documents: DocumentService
    parser: FileParser
    chat: ChatService

    @classmethod
    def build(
        cls, settings: QuerySettings, store: Store, gateway: GatewayClient, redis: Redis | None = None
    ) -> QueryService:
        """`redis`: the lifespan's client when CAIRN_REDIS_URL is set; the answer cache is then shared."""
        metrics = QueryMetrics()
        retriever = Retriever(settings, store, gateway, metrics)
        cache: Cache = (
            RedisAnswerCache(redis, settings.cache_ttl_s)
            if redis is not None and settings.cache_size
            else AnswerCache(settings.cache_size, settings.cache_ttl_s)  # size 0: stores nothing
        )
        return cls(
            settings=settings,
            store=store,
            gateway=gateway,
            metrics=metrics,
            retriever=retriever,
            documents=DocumentService(settings, store, gateway, metrics),
            parser=FileParser(settings.parse_timeout_s, settings.parse_memory_mb, settings.parse_concurrency),
            chat=ChatService(
                settings,
                store,
                retriever,
                gateway,
                cache,
                metrics,
            ),
        )
