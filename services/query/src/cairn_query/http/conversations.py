"""Conversations and ratings: the caller's threads (scoped by X-Cairn-Owner), asking in them, rating answers."""

from __future__ import annotations

from cairn_core import BadRequest, JSONResponse, Operation, Param, Reply, log_fields, parse_json_body
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.conversations.service import not_found
from cairn_query.http.chat import CHAT_STREAM, answer, new_turn
from cairn_query.http.params import ADMIN, admin_service, owner_of, page, page_params, path_id, service_of
from cairn_query.schemas import (
    ChatResponse,
    ConversationDeleted,
    ConversationDetail,
    ConversationIn,
    ConversationList,
    ConversationOut,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    MessageIn,
)


def _conversation_id(request: Request) -> str:
    conv_id = request.path_params["conv_id"]
    if not (conv_id.isascii() and conv_id.isalnum() and len(conv_id) <= 64):
        raise not_found(conv_id)
    return str(conv_id)


async def list_conversations(request: Request) -> Response:
    limit, offset = page(request, 50, 500)
    rows, total = await service_of(request).conversations.listing(owner_of(request), limit, offset)
    return JSONResponse({"conversations": rows, "total": total})


async def create_conversation(request: Request) -> Response:
    body = await parse_json_body(request, ConversationIn)
    conv = await service_of(request).conversations.create(owner_of(request), body.title)
    return JSONResponse(conv, status_code=201)


async def get_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    return JSONResponse(await service_of(request).conversations.get(owner_of(request), conv_id))


async def rename_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    body = await parse_json_body(request, ConversationIn)
    conv = await service_of(request).conversations.rename(owner_of(request), conv_id, body.title)
    return JSONResponse(conv)


async def delete_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    await service_of(request).conversations.delete(owner_of(request), conv_id)
    return JSONResponse({"id": conv_id, "deleted": True})


async def conversation_message(request: Request) -> Response:
    conv_id = _conversation_id(request)
    message = await parse_json_body(request, MessageIn)
    turn = new_turn(request, message.collection, "")
    body = await service_of(request).conversations.ask(owner_of(request), conv_id, message, turn)
    log_fields(request).update(conversation=conv_id, regenerate=message.regenerate)
    return await answer(request, body, turn)


async def rate(request: Request) -> Response:
    body = await parse_json_body(request, FeedbackIn)
    return JSONResponse(await service_of(request).feedback.rate(body, owner_of(request)))


async def feedback(request: Request) -> Response:
    svc = admin_service(request)
    rating = request.query_params.get("rating") or None
    if rating not in (None, "up", "down"):
        raise BadRequest("'rating' is 'up' or 'down'.")
    limit, offset = page(request, 50, 500)
    return JSONResponse(await svc.feedback.listing(rating, limit, offset))


_CONVERSATION = [path_id("conv_id")]

# Each route with its OpenAPI operation (http/openapi.py gathers them).
ENDPOINTS = [
    (
        Operation(
            "GET",
            "/v1/conversations",
            "The caller's conversations (X-Cairn-Owner), most recently active first",
            {200: Reply(ConversationList)},
            errors=(400,),
            params=page_params(50, 500),
            tags=["conversations"],
        ),
        list_conversations,
    ),
    (
        Operation(
            "POST",
            "/v1/conversations",
            "Start a conversation; its title becomes the first question unless one is given",
            {201: Reply(ConversationOut)},
            body=ConversationIn,
            tags=["conversations"],
        ),
        create_conversation,
    ),
    (
        Operation(
            "GET",
            "/v1/conversations/{conv_id}",
            "A conversation with its messages and their ratings",
            {200: Reply(ConversationDetail)},
            errors=(404,),
            params=_CONVERSATION,
            tags=["conversations"],
        ),
        get_conversation,
    ),
    (
        Operation(
            "PATCH",
            "/v1/conversations/{conv_id}",
            "Rename a conversation",
            {200: Reply(ConversationDetail)},
            errors=(404,),
            body=ConversationIn,
            params=_CONVERSATION,
            tags=["conversations"],
        ),
        rename_conversation,
    ),
    (
        Operation(
            "DELETE",
            "/v1/conversations/{conv_id}",
            "Delete a conversation and its messages",
            {200: Reply(ConversationDeleted)},
            errors=(404,),
            params=_CONVERSATION,
            tags=["conversations"],
        ),
        delete_conversation,
    ),
    (
        Operation(
            "POST",
            "/v1/conversations/{conv_id}/messages",
            "Ask in a conversation (or `regenerate` its last answer); answers as /v1/chat, stream or not",
            {200: Reply(ChatResponse, stream=CHAT_STREAM)},
            errors=(404,),
            body=MessageIn,
            params=_CONVERSATION,
            tags=["conversations"],
        ),
        conversation_message,
    ),
    (
        Operation(
            "POST",
            "/v1/feedback",
            "Rate an answer by its request id (a second rating replaces the first)",
            {200: Reply(FeedbackOut)},
            errors=(404,),
            body=FeedbackIn,
            tags=["conversations"],
        ),
        rate,
    ),
    (
        Operation(
            "GET",
            "/admin/feedback",
            "Ratings, newest first, with their question and answer, and the count of each",
            {200: Reply(FeedbackList)},
            errors=(400, 401),
            params=[
                Param("rating", "query", {"type": "string", "enum": ["up", "down"]}),
                *page_params(50, 500),
            ],
            security=ADMIN,
            tags=["admin"],
        ),
        feedback,
    ),
]
