"""A real OpenAI-compatible HTTP server whose failures are chosen by the request, for tests and benchmarks.

Run: `python -m cairn_testing.fake_openai --port 8090`. A marker in the last user message picks the behaviour:
`[[ok]]` (default), `[[made_up_number]]` (a valid citation on an invented number), `[[tokens:N]]`, `[[delay_ms:N]]`, `[[slow_first:S]]` (no answer for S seconds),
`[[silent]]` (200 headers, then nothing), `[[malformed]]`, `[[fail_once]]` (500, then success, per request id),
`[[fail_always]]`, `[[fail_status:N]]` (HTTP N, every time), `[[busy]]` (429 with Retry-After), `[[disconnect_mid]]`, `[[error_frame]]`, `[[no_done]]`,
`[[endless]]` (tokens until the client goes away), `[[bad_citation]]`, `[[good_citation]]`,
`[[linger_ms:N]]` (the stream's body ends N ms after `[DONE]`, as a slow network delivers it),
`[[burst]]` (a stream's frames in one write, as a server that buffers sends them: one read for the gateway),
`[[stall]]` (after the tokens, nothing more: no finish frame, no end; with `[[burst]]`, what came before in one write),
`[[surrogate_pair]]` (an answer with an emoji written as the escaped pair `\\ud83d\\ude00`), `[[deep_json]]`
(JSON nested 5,000 deep), `[[tool_call]]` (a call of the first tool in `tools`, `finish_reason: "tool_calls"`),
`[[markdown]]` (MARKDOWN_ANSWER, citing the first chunk: Markdown with a `<script>` and an `<img onerror>` in it;
a test stores the same text as its document, so the answer passes the support check).
`logprobs: true` in a request adds logprobs to each choice. `POST /v1/completions` answers legacy completions
(`text_completion`), with the markers read from the prompt.
Two flags make the whole server misbehave whatever the markers say, for tests of several upstreams:
`--fail-all STATUS` answers every chat request with that status, `--delay-ms N` makes every answer wait N ms
before its first byte (a slow server).
`--imitate NAME` makes it take `response_format` as a real server does: `openai` (the default: every format),
`llama-cpp-python` (`json_schema` refused with a 500), `ollama`, `vllm`, `vllm-xgrammar` (a schema with `enum` or
`minLength` refused with a 400); the table is in `imitations.py`. A grounded request (a system message with
`Sources:`) that no honoured format holds to JSON is answered as an unconstrained model might write it: a
sentence, then the JSON in a code fence.
`GET /_stats` reports what the server saw, including requests whose client disconnected mid-answer, how
many connections the chat requests came over, and the `response_format` types it refused (`refused`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .imitations import IMITATIONS, constrained, refusal

_MARK = re.compile(r"\[\[(\w+)(?::([^\]]*))?\]\]")


def _markers(body: dict[str, Any]) -> dict[str, str]:
    messages = body.get("messages") or []
    text = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    text += " " + str(body.get("prompt") or "")
    return {m.group(1): (m.group(2) or "") for m in _MARK.finditer(text)}


_SOURCE_ID = re.compile(r"^\[([^\[\]\n]+)\]", re.M)


def _prompt_ids(body: dict[str, Any]) -> list[str]:
    """The ids of the sources a grounded prompt lists (`[chunk_id] title` lines after `Sources:`)."""
    messages = body.get("messages") or []
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    head = system.find("Sources:")
    return _SOURCE_ID.findall(system[head:]) if head != -1 else []


def _schema_ids(body: dict[str, Any]) -> list[str]:
    """The ids a grounded answer may cite: the schema's enum (`json_schema`, or `json_object`'s `schema` key as
    llama-cpp-python reads it), else the prompt's sources."""
    fmt = body.get("response_format") or {}
    try:
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt["schema"]
        return list(schema["properties"]["citations"]["items"]["properties"]["chunk_id"]["enum"])
    except (KeyError, TypeError, AttributeError):
        return _prompt_ids(body)


class FakeState:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.requests = 0
        self.disconnected: list[str] = []
        self.completed: list[str] = []
        self.tokens_sent: Counter[str] = Counter()
        self.last_body: dict[str, Any] = {}
        self.last_headers: dict[str, str] = {}
        self.connections: set[str] = set()
        self.refused: list[str] = []


def _first_sentence_of(body: dict[str, Any], chunk_id: str) -> str:
    """The first sentence under `[chunk_id]` in the prompt's sources: what a faithful model would quote."""
    prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages", []))
    head = prompt.find(f"[{chunk_id}]")
    lines = prompt[head:].split("\n")[1:2] if head != -1 else []
    text = lines[0].strip() if lines else ""
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] or "The fake server read the sources."


# Paragraphs, a list, bold, code, and HTML that a page must show as text, never run.
MARKDOWN_ANSWER = (
    "Badge rules: **wear the badge** at all times and use `door-7` for the lab.\n\n"
    "- Scan in at the main gate <script>window.__pwned=1</script>\n"
    '- Scan out at night <img src=x onerror="window.__pwned=2">\n\n'
    "1. Report a lost badge to the front desk."
)


def _answer(body: dict[str, Any], marks: dict[str, str], held_to_json: bool) -> str:
    if "deep_json" in marks:
        return '{"answer": ' + "[" * 5000 + "]" * 5000 + "}"
    if "surrogate_pair" in marks:  # json.dumps escapes the emoji as a surrogate pair, as many models write it
        ids = _schema_ids(body) or ["unknown"]
        answer = _first_sentence_of(body, ids[0]) + " \U0001f600"
        return json.dumps({"answer": answer, "citations": [{"chunk_id": ids[0]}]})
    if "markdown" in marks:
        ids = _schema_ids(body) or ["unknown"]
        first, rest = MARKDOWN_ANSWER.split("\n", 1)
        answer = f"{first} [{ids[0]}]\n{rest}"
        return json.dumps({"answer": answer, "citations": [{"chunk_id": ids[0]}]})
    if "bad_citation" in marks:
        return json.dumps({"answer": "Made up.", "citations": [{"chunk_id": "not-a-real-chunk"}]})
    if "good_citation" in marks or "made_up_number" in marks or held_to_json:
        ids = _schema_ids(body) or ["unknown"]
        answer = _first_sentence_of(body, ids[0])
        if "made_up_number" in marks:  # a valid citation on an invented figure
            answer = "The answer is 4711 days."
        return json.dumps({"answer": answer, "citations": [{"chunk_id": ids[0]}]})
    if ids := _prompt_ids(body):  # asked for JSON by the prompt alone: prose around it, as models write it
        grounded = {"answer": _first_sentence_of(body, ids[0]), "citations": [{"chunk_id": ids[0]}]}
        return f"Here is the answer from the sources:\n```json\n{json.dumps(grounded)}\n```"
    n = int(marks.get("tokens") or 8)
    return " ".join(f"tok{i}" for i in range(n))


def _pieces(text: str, body: dict[str, Any]) -> list[str]:
    if body.get("response_format"):
        return [text[i : i + 5] for i in range(0, len(text), 5)]
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _tool_call(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools") or [{"function": {"name": "lookup"}}]
    name = (tools[0].get("function") or {}).get("name", "lookup")
    return {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": '{"q": "cairn"}'}}


def _logprobs(pieces: list[str]) -> dict[str, Any]:
    return {"content": [{"token": p, "logprob": -0.5, "bytes": None, "top_logprobs": []} for p in pieces]}


def _whole_answer(body: dict[str, Any], marks: dict[str, str], text: str, legacy: bool) -> dict[str, Any]:
    """The non-streamed answer: one choice (a message, a tool call or legacy text), with usage."""
    pieces = _pieces(text, body)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if legacy:
        choice["text"] = text
    elif "tool_call" in marks:
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [_tool_call(body)]}
        choice["finish_reason"] = "tool_calls"
    else:
        choice["message"] = {"role": "assistant", "content": text}
    if body.get("logprobs"):
        choice["logprobs"] = _logprobs(pieces)
    return {
        **_envelope(body.get("model", "fake"), legacy, streamed=False),
        "created": int(time.time()),
        "choices": [choice],
        "usage": _usage(len(pieces)),
    }


def _envelope(model: str, legacy: bool, streamed: bool) -> dict[str, Any]:
    kind = "text_completion" if legacy else "chat.completion.chunk" if streamed else "chat.completion"
    return {"id": "cmpl-fake" if legacy else "chatcmpl-fake", "object": kind, "created": 0, "model": model}


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": 11,
        "completion_tokens": completion_tokens,
        "total_tokens": 11 + completion_tokens,
    }


class FakeServer:
    """The routes of one fake server and what they saw (`GET /_stats`)."""

    def __init__(self, fail_all: int | None, delay_ms: float, imitate: str) -> None:
        self.state = FakeState()
        self.fail_all, self.delay_ms, self.imitate = fail_all, delay_ms, imitate

    def _record(self, request: Request, body: dict[str, Any], rid: str) -> None:
        state = self.state
        state.requests += 1
        state.attempts[rid] += 1
        if request.client is not None:
            state.connections.add(f"{request.client.host}:{request.client.port}")
        state.last_body, state.last_headers = body, dict(request.headers)

    async def _refuse(
        self, request: Request, body: dict[str, Any], marks: dict[str, str], rid: str
    ) -> Response | None:
        """The failures chosen before any answer: the whole server's, the imitated server's, the markers'."""
        if self.fail_all is not None:
            message = f"whole server fails ({self.fail_all})"
            return JSONResponse({"error": {"message": message}}, status_code=self.fail_all)
        if (refused := refusal(self.imitate, body)) is not None:
            self.state.refused.append(str(body["response_format"].get("type")))
            return JSONResponse(refused[1], status_code=refused[0])
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if "fail_always" in marks or ("fail_once" in marks and self.state.attempts[rid] == 1):
            return JSONResponse({"error": {"message": "synthetic failure"}}, status_code=500)
        if "fail_status" in marks:
            status = int(marks["fail_status"] or 400)
            return JSONResponse({"error": {"message": f"synthetic HTTP {status}"}}, status_code=status)
        if "busy" in marks:
            return JSONResponse({"error": {"message": "busy"}}, status_code=429, headers={"Retry-After": "0"})
        if "slow_first" in marks:
            # Poll for a disconnect while "thinking", so tests can see that a caller's cancel reached us.
            until = time.monotonic() + float(marks["slow_first"] or 5)
            while time.monotonic() < until:
                if await request.is_disconnected():
                    self.state.disconnected.append(rid)
                    return Response(status_code=499)
                await asyncio.sleep(0.05)
        if "malformed" in marks and not body.get("stream"):
            return Response(b"{not json", media_type="application/json")
        return None

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        rid = request.headers.get("x-request-id", "")
        self._record(request, body, rid)
        marks = _markers(body)
        if (refused := await self._refuse(request, body, marks, rid)) is not None:
            return refused
        text = _answer(body, marks, constrained(self.imitate, body))
        legacy = request.url.path.endswith("/v1/completions")
        if not body.get("stream"):
            return JSONResponse(_whole_answer(body, marks, text, legacy))
        frames = _Stream(self.state, rid, body, marks, legacy).frames(text)
        if "burst" in marks:
            frames = _bursts(frames)
        return StreamingResponse(frames, media_type="text/event-stream")

    async def models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]}
        )

    async def stats(self, request: Request) -> Response:
        state = self.state
        return JSONResponse(
            {
                "requests": state.requests,
                "attempts": dict(state.attempts),
                "disconnected": state.disconnected,
                "completed": state.completed,
                "tokens_sent": dict(state.tokens_sent),
                "last_body": state.last_body,
                "last_headers": state.last_headers,
                "connections": len(state.connections),
                "refused": state.refused,
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def create_app(fail_all: int | None = None, delay_ms: float = 0.0, imitate: str = "openai") -> Starlette:
    server = FakeServer(fail_all, delay_ms, imitate)
    return Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
            Route("/v1/completions", server.chat, methods=["POST"]),
            Route("/v1/models", server.models),
            Route("/_stats", server.stats),
            Route("/healthz", server.healthz),
        ]
    )


async def _bursts(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`[[burst]]`: frames held and sent in one write, up to an empty one (a burst's end) or the last."""
    held: list[bytes] = []
    async for frame in frames:
        if frame:
            held.append(frame)
        else:
            yield b"".join(held)
            held = []
    if held:
        yield b"".join(held)


def _frame(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


class _Stream:
    """One streamed answer, frame by frame, misbehaving as its markers say."""

    def __init__(
        self, state: FakeState, rid: str, body: dict[str, Any], marks: dict[str, str], legacy: bool
    ) -> None:
        self.state, self.rid, self.body, self.marks, self.legacy = state, rid, body, marks, legacy
        self.model = body.get("model", "fake")
        self.delay = float(marks.get("delay_ms") or 0) / 1000
        self.errored = False

    def chunk(self, content: str | None, finish: str | None = None, **delta_extra: Any) -> bytes:
        if self.legacy:  # a text_completion frame: the same object as the whole answer, piece by piece
            choice: dict[str, Any] = {"index": 0, "text": content or "", "finish_reason": finish}
        else:
            delta = {"content": content} if content is not None else {}
            choice = {"index": 0, "delta": {**delta, **delta_extra}, "finish_reason": finish}
        if self.body.get("logprobs") and content:
            choice["logprobs"] = _logprobs([content])
        return _frame({**_envelope(self.model, self.legacy, streamed=True), "choices": [choice]})

    async def frames(self, text: str) -> AsyncIterator[bytes]:
        try:
            if "silent" in self.marks:
                await asyncio.sleep(3600)
            yield self.chunk("")
            if "tool_call" in self.marks and not self.legacy:
                for frame in self._tool_call():
                    yield frame
                self.state.completed.append(self.rid)
                return
            if "malformed" in self.marks:
                yield b"data: this is not json\n\n"
            pieces = _pieces(text, self.body)
            async for frame in self._tokens(pieces):
                yield frame
            if self.errored:  # an error frame ends the stream: no finish, no [DONE]
                return
            async for frame in self._end(len(pieces)):
                yield frame
        except asyncio.CancelledError:
            self.state.disconnected.append(self.rid)
            raise

    def _tool_call(self) -> list[bytes]:
        # As OpenAI streams a tool call: the call's id and name first, then its arguments in pieces.
        call = _tool_call(self.body)
        args = call["function"]["arguments"]
        head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
        out = [self.chunk(None, tool_calls=[head])]
        for i in range(0, len(args), 6):
            out.append(
                self.chunk(None, tool_calls=[{"index": 0, "function": {"arguments": args[i : i + 6]}}])
            )
        return [*out, self.chunk(None, "tool_calls"), _frame("[DONE]")]

    async def _tokens(self, pieces: list[str]) -> AsyncIterator[bytes]:
        endless = "endless" in self.marks
        i = 0
        while endless or i < len(pieces):
            yield self.chunk(pieces[i] if i < len(pieces) else f"more{i} ")
            self.state.tokens_sent[self.rid] += 1
            i += 1
            if "disconnect_mid" in self.marks and i == 2:
                raise RuntimeError("fake server drops the connection mid-stream")
            if "error_frame" in self.marks and i == 2:
                yield _frame({"error": {"message": "upstream exploded", "type": "server_error"}})
                self.errored = True
                return
            if self.delay or endless:
                await asyncio.sleep(self.delay or 0.02)

    async def _end(self, n_pieces: int) -> AsyncIterator[bytes]:
        if "stall" in self.marks:  # the model stopped producing, and the connection stays open
            if "burst" in self.marks:
                yield b""  # the end of a burst: what was held goes out now
            await asyncio.sleep(3600)
        if "no_done" in self.marks:
            return
        yield self.chunk(None, "stop")
        if (self.body.get("stream_options") or {}).get("include_usage"):
            envelope = _envelope(self.model, self.legacy, streamed=True)
            yield _frame({**envelope, "choices": [], "usage": _usage(n_pieces)})
        yield _frame("[DONE]")
        self.state.completed.append(self.rid)
        if "linger_ms" in self.marks:
            await asyncio.sleep(float(self.marks["linger_ms"] or 50) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fail-all", type=int, default=None, metavar="STATUS")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--imitate", choices=IMITATIONS, default="openai")
    args = parser.parse_args()
    app = create_app(fail_all=args.fail_all, delay_ms=args.delay_ms, imitate=args.imitate)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
