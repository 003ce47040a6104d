"""The services one QS process holds, built in the lifespan and reached by handlers as `app.state.service`."""

from __future__ import annotations

from dataclasses import dataclass

from .cache import AnswerCache
from .chat import ChatService
from .documents import DocumentService
from .gateway import GatewayClient
from .metrics import QueryMetrics
from .retrieval import Retriever
from .settings import QuerySettings
from .store import SQLiteStore


@dataclass
class QueryService:
    settings: QuerySettings
    store: SQLiteStore
    gateway: GatewayClient
    metrics: QueryMetrics
    retriever: Retriever
    documents: DocumentService
    chat: ChatService

    @classmethod
    def build(cls, settings: QuerySettings, store: SQLiteStore, gateway: GatewayClient) -> QueryService:
        metrics = QueryMetrics()
        retriever = Retriever(settings, store, gateway, metrics)
        return cls(
            settings=settings,
            store=store,
            gateway=gateway,
            metrics=metrics,
            retriever=retriever,
            documents=DocumentService(settings, store, gateway, metrics),
            chat=ChatService(
                settings,
                store,
                retriever,
                gateway,
                AnswerCache(settings.cache_size, settings.cache_ttl_s),
                metrics,
            ),
        )
