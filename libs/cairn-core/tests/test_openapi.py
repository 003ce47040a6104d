"""The OpenAPI builder: shared error bodies, the statuses every route can answer, SSE events as item schemas."""

from __future__ import annotations

from cairn_core import (
    DeltaEvent,
    DoneEvent,
    GenerateRequest,
    GenerateResponse,
    Operation,
    Reply,
    Stream,
    openapi_document,
)
from pydantic import BaseModel

REF = "#/components/schemas/"


class OtherError(BaseModel):
    error: str


def _doc() -> dict:
    stream = Stream({"delta": [DeltaEvent], "done": [DoneEvent]})
    return openapi_document(
        "t",
        "v1",
        [
            Operation(
                "POST",
                "/gen",
                "Generate",
                {200: Reply(GenerateResponse, stream=stream)},
                errors=(404,),
                body=GenerateRequest,
                security=[{"bearer": []}],
            ),
            Operation(
                "GET",
                "/other",
                "Other",
                {200: Reply(media=["text/plain"])},
                errors=(404,),
                error_model=OtherError,
            ),
        ],
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
    )


def test_requests_use_validation_schemas_and_answers_serialization_schemas() -> None:
    doc = _doc()
    op = doc["paths"]["/gen"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": REF + "GenerateRequest"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "GenerateResponse"
    }
    assert {"GenerateRequest", "GenerateResponse", "ErrorBody", "ChatMessage"} <= set(
        doc["components"]["schemas"]
    )
    assert op["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_errors_share_one_body_that_allows_extra_fields() -> None:
    doc = _doc()
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"reason_code", "message", "request_id"}
    assert error.get("additionalProperties", True) is True
    responses = doc["paths"]["/gen"]["post"]["responses"]
    assert set(responses) == {"200", "400", "404", "408", "413", "500"}
    assert responses["404"]["content"]["application/json"]["schema"] == {"$ref": REF + "ErrorBody"}


def test_the_body_limit_and_last_resort_handler_keep_the_shared_shape() -> None:
    responses = _doc()["paths"]["/other"]["get"]["responses"]
    assert set(responses) == {"200", "404", "500"}  # no body, so no 400 or 413
    assert responses["404"]["content"]["application/json"]["schema"] == {"$ref": REF + "OtherError"}
    assert responses["500"]["content"]["application/json"]["schema"] == {"$ref": REF + "ErrorBody"}


def test_a_stream_is_described_event_by_event() -> None:
    content = _doc()["paths"]["/gen"]["post"]["responses"]["200"]["content"]
    variants = content["text/event-stream"]["itemSchema"]["oneOf"]
    by_name = {v["properties"]["event"]["const"]: v["properties"]["data"] for v in variants}
    assert by_name["delta"] == {
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": REF + "DeltaEvent"},
    }
    assert by_name["done"]["contentSchema"] == {"$ref": REF + "DoneEvent"}


def test_a_route_without_an_operation_cannot_be_documented() -> None:
    import pytest
    from cairn_core import Endpoint
    from starlette.responses import Response
    from starlette.routing import Route

    async def handler(request: object) -> Response:
        return Response()

    documented = Endpoint(handler, Operation("GET", "/a", "A", {200: Reply(media=["text/plain"])}))
    hidden = Route("/hidden", handler, include_in_schema=False)
    doc = openapi_document("t", "v1", [documented, hidden])
    assert list(doc["paths"]) == ["/a"]
    with pytest.raises(TypeError, match="'/b' has no OpenAPI operation"):
        openapi_document("t", "v1", [documented, Route("/b", handler)])
