"""The Prometheus metric names a service exports and the BFF's dashboard reads: spelt once, for both sides.

A rename here renames both the metric and what the dashboard looks for. Counters are named without the
`_total` that prometheus_client appends to their samples; `total(name)` is the sample's name.
"""

from __future__ import annotations

from typing import Final


def total(counter: str) -> str:
    """The name of a counter's samples in the exposition text."""
    return f"{counter}_total"


class GatewayMetric:
    # Per request: how many, how fast, how they ended.
    REQUESTS: Final = "cairn_gateway_requests"
    LATENCY: Final = "cairn_gateway_request_latency_seconds"
    TTFT: Final = "cairn_gateway_time_to_first_token_seconds"
    TOKENS: Final = "cairn_gateway_tokens"
    TOKENS_PER_SECOND: Final = "cairn_gateway_tokens_per_second"
    FALLBACKS: Final = "cairn_gateway_fallbacks"
    # Per model, now: its load and its health.
    IN_FLIGHT: Final = "cairn_gateway_in_flight"
    QUEUE_DEPTH: Final = "cairn_gateway_queue_depth"
    CIRCUIT_STATE: Final = "cairn_gateway_circuit_state"
    PROVIDER_UP: Final = "cairn_gateway_provider_up"
    MODEL_CRASHES: Final = "cairn_gateway_model_crashes"


class QueryMetric:
    REQUESTS: Final = "cairn_qs_requests"
    CACHE: Final = "cairn_qs_cache"
    FALLBACKS: Final = "cairn_qs_fallbacks"
    RETRIEVAL_LATENCY: Final = "cairn_qs_retrieval_latency_seconds"
    FEEDBACK: Final = "cairn_qs_feedback"


class BffMetric:
    REQUESTS: Final = "cairn_bff_requests"
    REJECTED: Final = "cairn_bff_rejected"
    STREAMS_ACTIVE: Final = "cairn_bff_streams_active"
    STREAMS: Final = "cairn_bff_streams"
