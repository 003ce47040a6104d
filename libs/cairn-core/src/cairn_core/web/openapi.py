"""OpenAPI 3.1 documents built from a service's routes and the pydantic models they parse and answer with.

A route is an `Endpoint`: a Starlette `Route` that carries its `Operation` (path, method, request body,
parameters, responses). `openapi_document(title, version, routes)` walks the route table, and a route without
an operation is an error (`include_in_schema=False` opts one out, as `/openapi.json` itself does), so no route
can exist without its document. The body model of an operation is the one its endpoint parses the request
with and hands to the handler (`mode="validation"`); the reply models describe what it sends
(`mode="serialization"`), and the fuzz run (tests/test_fuzz.py) checks every answer against them. Every error
answer is one shared `ErrorBody` unless an operation says otherwise (the OpenAI-compatible routes answer in
OpenAI's shape).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..contract.errors import ErrorBody
from .handlers import parse_json_body
from .json import JSONResponse

REF = "#/components/schemas/{model}"
EVENT_STREAM = "text/event-stream"

# Statuses any operation can answer: the body limit (413) and the last-resort handler (500) sit in front of
# every route; every route that reads a body can also answer 400.
_ALWAYS = (500,)
_WITH_BODY = (400, 408, 413)  # 408: the body did not arrive in time (BodyLimitMiddleware)
_SHARED_LAYERS = (413, 500)
Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["query", "path", "header"]
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Stream:
    """A `text/event-stream` answer: by event name, the models its JSON `data` may be ("message" names the
    frames without an `event:` line, as OpenAI sends them). Written as OpenAPI 3.2's `itemSchema`, one event
    per item, which schemathesis checks event by event."""

    events: Mapping[str, Sequence[type[BaseModel]]]
    sentinel: str | None = None  # a plain `data:` line that ends the stream (OpenAI's "[DONE]")


@dataclass(frozen=True)
class Reply:
    """One success answer: a JSON model, an SSE stream, and/or other media types (Prometheus text, a page)."""

    model: type[BaseModel] | None = None
    media: Sequence[str] = ()
    description: str = "OK"
    stream: Stream | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    replies: Mapping[int, Reply]
    errors: Sequence[int] = ()
    body: type[BaseModel] | None = None
    # A multipart/form-data alternative to the JSON body: a JSON Schema of its fields.
    multipart: Mapping[str, Any] | None = None
    params: Sequence[Param] = ()
    # OpenAPI security requirements; `[{}]` in the list makes the scheme optional.
    security: Sequence[Mapping[str, Sequence[str]]] | None = None
    error_model: type[BaseModel] = ErrorBody
    tags: Sequence[str] = ()
    # Error statuses described by another model than `error_model` (a 503 from /readyz, say).
    error_replies: Mapping[int, Reply] = field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok"]


# The operations every service has, the same everywhere (`/readyz` differs: each says what it depends on).
HEALTHZ = Operation("GET", "/healthz", "Liveness: the process answers", {200: Reply(Health)}, tags=["ops"])
METRICS = Operation("GET", "/metrics", "Prometheus metrics", {200: Reply(media=["text/plain"])}, tags=["ops"])


class Endpoint(Route):
    """A route and its operation in one. With `op.body` set (and `parse_body`), the request body is parsed with
    that model, a 400 when it does not fit, and the handler is called as `handler(request, body)`; otherwise as
    `handler(request)`. `parse_body=False` leaves the body to the handler (one that answers its own error shape).
    `guard(request)` runs first: a credential check answers 401 before a body is read."""

    def __init__(
        self,
        handler: Callable[..., Awaitable[Response]],
        op: Operation,
        *,
        parse_body: bool = True,
        guard: Callable[[Request], object] | None = None,
    ) -> None:
        self.operation = op
        model = op.body if parse_body else None

        async def endpoint(request: Request) -> Response:
            if guard is not None:
                guard(request)
            if model is None:
                return await handler(request)
            return await handler(request, await parse_json_body(request, model))

        super().__init__(op.path, endpoint, methods=[op.method], name=handler.__name__)


def operations_of(routes: Iterable[BaseRoute | Operation]) -> list[Operation]:
    """The operation of every route; a route that has none and is not opted out raises, naming it."""
    ops = []
    for route in routes:
        if isinstance(route, Operation):
            ops.append(route)
        elif isinstance(route, Endpoint):
            ops.append(route.operation)
        elif getattr(route, "include_in_schema", True):
            raise TypeError(
                f"{getattr(route, 'path', route)!r} has no OpenAPI operation: make it an Endpoint"
            )
    return ops


def openapi_document(
    title: str,
    version: str,
    routes: Iterable[BaseRoute | Operation],
    *,
    description: str = "",
    security_schemes: Mapping[str, Mapping[str, Any]] | None = None,
    guarded_errors: Sequence[int] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`, components from pydantic's `models_json_schema`.

    `guarded_errors` are added to every operation but the probes: what a service-wide guard answers (the
    internal-token check's 401)."""
    probes = {HEALTHZ.path, METRICS.path, "/readyz"}
    ops = [
        op if op.path in probes else replace(op, errors=(*op.errors, *guarded_errors))
        for op in operations_of(routes)
    ]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for op in ops:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        replies = [*op.replies.values(), *op.error_replies.values()]
        wanted += [(r.model, "serialization") for r in replies if r.model is not None]
        wanted += [
            (m, "serialization") for r in replies if r.stream for ms in r.stream.events.values() for m in ms
        ]
        wanted += [(op.error_model, "serialization"), (ErrorBody, "serialization")]
    schemas, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    refs: Refs = dict(schemas)

    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, **({"description": description} if description else {})},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if security_schemes:
        doc["components"]["securitySchemes"] = dict(security_schemes)
    return doc


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": operation_id(op.method, op.path),
        "responses": {},
    }
    if op.tags:
        out["tags"] = list(op.tags)
    if op.params:
        out["parameters"] = [_param(p) for p in op.params]
    if op.body is not None or op.multipart is not None:
        content: dict[str, Any] = {}
        if op.body is not None:
            content["application/json"] = {"schema": refs[(op.body, "validation")]}
        if op.multipart is not None:
            content["multipart/form-data"] = {"schema": dict(op.multipart)}
        out["requestBody"] = {"required": True, "content": content}
    if op.security is not None:
        out["security"] = [dict(s) for s in op.security]
    for status, reply in op.replies.items():
        out["responses"][str(status)] = _reply(reply, refs)
    has_body = op.body is not None or op.multipart is not None
    for status in sorted({*op.errors, *_ALWAYS, *(_WITH_BODY if has_body else ())}):
        # The body limit and the last-resort handler answer before any route could pick another shape.
        model = ErrorBody if status in _SHARED_LAYERS else op.error_model
        error = {"description": "Error", "content": {"application/json": {"schema": _ref(model, refs)}}}
        out["responses"].setdefault(str(status), error)
    for status, reply in op.error_replies.items():
        out["responses"][str(status)] = _reply(reply, refs)
    return out


def operation_id(method: str, path: str) -> str:
    """`post_v1_chat_completions`: unique per method and path, and stable for generated clients."""
    words = path.strip("/").replace("{", "").replace("}", "").replace("-", "_").split("/")
    return "_".join([method.lower(), *words]) if path != "/" else f"{method.lower()}_root"


def _ref(model: type[BaseModel], refs: Refs) -> Any:
    return refs[(model, "serialization")]


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if reply.model is not None:
        content["application/json"] = {"schema": _ref(reply.model, refs)}
    if reply.stream is not None:
        content[EVENT_STREAM] = {"itemSchema": _event_schema(reply.stream, refs)}
    for media in reply.media:
        content[media] = {"schema": {"type": "string"}}
    return {"description": reply.description, **({"content": content} if content else {})}


def _event_schema(stream: Stream, refs: Refs) -> Any:
    variants = []
    for name, models in stream.events.items():
        schemas = [_ref(m, refs) for m in models]
        data: dict[str, Any] = {
            "contentMediaType": "application/json",
            "contentSchema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas},
        }
        if name == "message" and stream.sentinel is not None:
            data = {"if": {"const": stream.sentinel}, "else": data}
        variants.append(
            {
                "type": "object",
                "properties": {"event": {"const": name}, "data": data},
                "required": ["event", "data"],
            }
        )
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def _param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.location, "required": p.required, "schema": dict(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def openapi_route(build: Callable[[], dict[str, Any]], path: str = "/openapi.json") -> Route:
    """`GET /openapi.json`, built on first request and kept: the operations are fixed once the code is loaded."""
    cache: list[bytes] = []

    async def openapi(request: Request) -> Response:
        if not cache:
            cache.append(bytes(JSONResponse(build()).body))
        return Response(cache[0], media_type="application/json")

    return Route(path, openapi, methods=["GET"], include_in_schema=False)
