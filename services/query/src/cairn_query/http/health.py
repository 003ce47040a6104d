"""Probes and metrics: `/healthz` (the process answers), `/readyz` (the store answers), `/metrics`."""

from __future__ import annotations

from cairn_core import (
    HEALTHZ,
    METRICS,
    ErrorBody,
    JSONResponse,
    Operation,
    ReasonCode,
    Reply,
    metrics_response,
    request_id_of,
)
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.http.params import service_of
from cairn_query.schemas import QueryReady


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
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


READY = Operation(
    "GET",
    "/readyz",
    "Readiness: the store answers",
    {200: Reply(QueryReady)},
    error_replies={503: Reply(ErrorBody, description="The store is not usable")},
    tags=["ops"],
)

# Each route with its OpenAPI operation (http/openapi.py gathers them).
ENDPOINTS = [(HEALTHZ, healthz), (READY, readyz), (METRICS, metrics)]
