"""Conversations and ratings: the caller's threads (scoped by X-Cairn-Owner), asking in them, rating answers."""

from __future__ import annotations

from functools import partial

from cairn_core import BadRequest, JSONResponse, Param, Reply, log_fields
from starlette.requests import Request
from starlette.responses import Response

from cairn_query import schemas
from cairn_query.conversations.service import not_found
from cairn_query.http.chat import CHAT_STREAM, answer, new_turn
from cairn_query.http.params import (
    ADMIN,
    admin_of,
    endpoint,
    owner_of,
    page,
    page_params,
    path_id,
    service_of,
)

_route = partial(endpoint, tags="conversations")
_admin = partial(endpoint, tags="admin", security=ADMIN)


def _conversation_id(request: Request) -> str:
    conv_id = request.path_params["conv_id"]
    if not (conv_id.isascii() and conv_id.isalnum() and len(conv_id) <= 64):
        raise not_found(conv_id)
    return str(conv_id)


_CONVERSATION = [path_id("conv_id")]


@_route("GET", "/v1/conversations", schemas.ConversationList, errors=(400,), params=page_params(50, 500))
async def list_conversations(request: Request) -> Response:
    """The caller's conversations (X-Cairn-Owner), most recently active first"""
    limit, offset = page(request, 50, 500)
    rows, total = await service_of(request).conversations.listing(owner_of(request), limit, offset)
    return JSONResponse({"conversations": rows, "total": total})


@_route("POST", "/v1/conversations", {201: Reply(schemas.ConversationOut)}, body=schemas.ConversationIn)
async def create_conversation(request: Request, body: schemas.ConversationIn) -> Response:
    """Start a conversation; its title becomes the first question unless one is given"""
    conv = await service_of(request).conversations.create(owner_of(request), body.title)
    return JSONResponse(conv, status_code=201)


@_route("GET", "/v1/conversations/{conv_id}", schemas.ConversationDetail, errors=(404,), params=_CONVERSATION)
async def get_conversation(request: Request) -> Response:
    """A conversation with its messages and their ratings"""
    conv_id = _conversation_id(request)
    return JSONResponse(await service_of(request).conversations.get(owner_of(request), conv_id))


@_route(
    "PATCH",
    "/v1/conversations/{conv_id}",
    schemas.ConversationDetail,
    errors=(404,),
    body=schemas.ConversationIn,
    params=_CONVERSATION,
)
async def rename_conversation(request: Request, body: schemas.ConversationIn) -> Response:
    """Rename a conversation"""
    conv_id = _conversation_id(request)
    conv = await service_of(request).conversations.rename(owner_of(request), conv_id, body.title)
    return JSONResponse(conv)


@_route(
    "DELETE", "/v1/conversations/{conv_id}", schemas.ConversationDeleted, errors=(404,), params=_CONVERSATION
)
async def delete_conversation(request: Request) -> Response:
    """Delete a conversation and its messages"""
    conv_id = _conversation_id(request)
    await service_of(request).conversations.delete(owner_of(request), conv_id)
    return JSONResponse({"id": conv_id, "deleted": True})


@_route(
    "POST",
    "/v1/conversations/{conv_id}/messages",
    Reply(schemas.ChatResponse, stream=CHAT_STREAM),
    errors=(404,),
    body=schemas.MessageIn,
    params=_CONVERSATION,
)
async def conversation_message(request: Request, message: schemas.MessageIn) -> Response:
    """Ask in a conversation (or `regenerate` its last answer); answers as /v1/chat, stream or not"""
    conv_id = _conversation_id(request)
    turn = await new_turn(request, message.collection, "")
    body = await service_of(request).conversations.ask(owner_of(request), conv_id, message, turn)
    log_fields(request).update(conversation=conv_id, regenerate=message.regenerate)
    return await answer(request, body, turn)


@_route("POST", "/v1/feedback", schemas.FeedbackOut, errors=(404,), body=schemas.FeedbackIn)
async def rate(request: Request, body: schemas.FeedbackIn) -> Response:
    """Rate an answer by its request id (a second rating replaces the first)"""
    return JSONResponse(await service_of(request).feedback.rate(body, owner_of(request)))


@_admin(
    "GET",
    "/admin/feedback",
    schemas.FeedbackList,
    errors=(400, 401),
    params=[
        Param("rating", "query", {"type": "string", "enum": ["up", "down"]}),
        *page_params(50, 500),
    ],
)
async def feedback(request: Request) -> Response:
    """Ratings, newest first, with their question and answer, and the count of each"""
    svc = await admin_of(request)
    rating = request.query_params.get("rating") or None
    if rating not in (None, "up", "down"):
        raise BadRequest("'rating' is 'up' or 'down'.")
    limit, offset = page(request, 50, 500)
    return JSONResponse(await svc.feedback.listing(rating, limit, offset))


ENDPOINTS = [
    list_conversations,
    create_conversation,
    get_conversation,
    rename_conversation,
    delete_conversation,
    conversation_message,
    rate,
    feedback,
]
