"""What an OpenAI-compatible server's answer says, whole or streamed: its text, what it carries beyond text
(tool calls, logprobs), its usage, its finish reason and its errors.

`StreamedAnswer` reads a stream one upstream read at a time and returns the chunks each read completed, so that
the gateway can hand a read's chunks on together (docs/benchmarks.md, "The stream path").
"""

from __future__ import annotations

from collections import deque
from typing import Any

import structlog
from cairn_core import ReasonCode, SSEDecoder, SSEMessage, StopReason, Usage, json_loads

from ..errors import ProviderError
from .base import ProviderChunk

log = structlog.get_logger("openai_compat")

FINISH = {"stop": StopReason.EOS, "length": StopReason.LENGTH, "eos": StopReason.EOS}


def usage_of(data: dict[str, Any] | None) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        total_tokens=int(data.get("total_tokens") or 0),
    )


def frame_error(data: dict[str, Any]) -> ProviderError:
    err = data.get("error")
    message = err.get("message") if isinstance(err, dict) else str(err)
    return ProviderError(
        ReasonCode.PROVIDER_ERROR, f"The model server reported an error mid-stream: {message}"
    )


def beyond_text(part: dict[str, Any]) -> dict[str, Any] | None:
    """A message or delta without its role and text: tool calls, refusal, audio, whatever the server added."""
    rest = {k: v for k, v in part.items() if k not in ("role", "content") and v is not None}
    return rest or None


class StreamedAnswer:
    """What a streamed answer's frames said so far: `feed` it each read, `take` the chunks its frames carry."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw  # a `/completions` answer: text in `choices[].text`, no delta
        self.decoder = SSEDecoder()
        self.frames: deque[SSEMessage] = deque()  # fed, not taken yet
        self.finish: StopReason | None = None
        self.native: str | None = None
        self.usage: Usage | None = None
        self.done = False  # `[DONE]` arrived
        self.error: ProviderError | None = None  # an error frame arrived

    @property
    def ended(self) -> bool:
        return self.done or self.error is not None

    def feed(self, data: bytes) -> None:
        self.frames.extend(self.decoder.feed(data))

    def take(self, limit: int | None = None) -> list[ProviderChunk]:
        """The chunks of the frames fed so far (at most about `limit`), up to `[DONE]` or an error frame: either
        ends the answer, and what follows it is dropped."""
        batch: list[ProviderChunk] = []
        while self.frames and not self.ended and (limit is None or len(batch) < limit):
            self._read(self.frames.popleft(), batch)
        return batch

    def _read(self, msg: SSEMessage, batch: list[ProviderChunk]) -> None:
        if msg.data.strip() == "[DONE]":
            self.done = True
            return
        try:
            frame = json_loads(msg.data)
        except ValueError:
            log.warning("upstream_non_json_line", line=msg.data[:200])
            return
        if not isinstance(frame, dict):
            return
        if "error" in frame:
            self.error = frame_error(frame)
            return
        self.usage = usage_of(frame.get("usage")) or self.usage
        for choice in frame.get("choices") or []:
            delta = {} if self.raw else (choice.get("delta") or {})
            piece = choice.get("text") if self.raw else delta.get("content")
            rest, logprobs = beyond_text(delta), choice.get("logprobs")
            if piece or rest or logprobs:
                batch.append(ProviderChunk(text=piece or "", delta=rest, logprobs=logprobs))
            if choice.get("finish_reason"):
                self.native = str(choice["finish_reason"])
                self.finish = FINISH.get(self.native, StopReason.EOS)
