"""The gateway's exceptions, under cairn-core's tree (cairn_core.contract.errors), mapped to HTTP there once.

    CairnError
     ├─ ModelNotLoaded           the model asked for is not loaded; the fallback chain is tried next
     ├─ UnsupportedField         an OpenAI field the chosen model cannot honour: a 400 naming it (`param`)
     ├─ CitationError            the model's citation JSON is unusable: MALFORMED_OUTPUT, INVALID_CITATION,
     │                           MISSING_CITATIONS; a fallback, never shown (cairn_gateway.citations)
     ├─ WorkerDied               MODEL_CRASHED: the model's worker process died while loading or serving
     │                           (cairn_gateway.in_process.worker)
     └─ UpstreamError
         └─ ProviderError        a model provider failed; `retryable` says whether its own client may call again
             └─ FormatRefused    the upstream does not take the `response_format` sent
                                 (cairn_gateway.providers.structured_output)

The engine's fallback chain reads reason codes (`DEGRADABLE`), the circuit breakers read `UNHEALTHY`
(providers/base.py); nothing parses a message.
"""

from __future__ import annotations

from cairn_core import CairnError, ReasonCode, UpstreamError


class ModelNotLoaded(CairnError):
    """A request for a model that is not loaded. Whatever the reason (a refused file is MODEL_REJECTED), it is
    not the request's fault, so the fallback chain is tried next; when nothing answers, the client sees why."""


class UnsupportedField(CairnError):
    """A 400 that names the field, also as OpenAI's `error.param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(ReasonCode.BAD_REQUEST, message)
        self.param = param


class ProviderError(UpstreamError):
    """A provider failed. `retryable` (see UpstreamError): the provider's own client may call again (only
    openai_compat and the router do, before the first chunk); the engine's fallback chain reads reason codes."""
