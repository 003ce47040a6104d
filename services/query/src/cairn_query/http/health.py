"""Probes and metrics: `/healthz` (the process answers), `/readyz` (the store answers), `/metrics`."""

from __future__ import annotations

from functools import partial

from cairn_core import (
    HEALTHZ,
    METRICS,
    Endpoint,
    ErrorBody,
    JSONResponse,
    ReasonCode,
    Reply,
    metrics_response,
    request_id_of,
)
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.http.params import endpoint, service_of
from cairn_query.schemas import QueryReady

_route = partial(endpoint, tags="ops")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@_route(
    "GET", "/readyz", QueryReady, error_replies={503: Reply(ErrorBody, description="The store is not usable")}
)
async def readyz(request: Request) -> Response:
    """Readiness: the store answers"""
    svc = service_of(request)
    try:
        stats = await svc.documents.stats()
    except Exception as exc:  # the store is the one thing QS cannot work without
        return JSONResponse(
            {
                "status": "unavailable",
                "reason_code": ReasonCode.INTERNAL_ERROR.value,
                "message": f"The store is not usable: {type(exc).__name__}.",
                "request_id": request_id_of(request),
            },
            status_code=503,
        )
    circuit = "open" if svc.gateway.circuit_open else "closed"
    return JSONResponse({"status": "ready", **stats, "gateway_circuit": circuit})


async def metrics(request: Request) -> Response:
    svc = service_of(request)
    stats = await svc.documents.stats()
    svc.metrics.documents.set(stats["documents"])
    svc.metrics.chunks.set(stats["chunks"])
    svc.metrics.circuit_open.set(1 if svc.gateway.circuit_open else 0)
    return metrics_response(svc.metrics.registry)


# /healthz and /metrics are declared alike by every service (cairn_core).
ENDPOINTS = [Endpoint(healthz, HEALTHZ), readyz, Endpoint(metrics, METRICS)]
