"""In-process generation with onnxruntime-genai, for a genai model folder (`LLM_ONNX_MODEL_DIR`).

A genai folder holds `genai_config.json`, the ONNX decoder and its tokenizer, as produced by onnxruntime-genai's
model builder. Messages go through the folder's chat template when it has one, else through the same plain
completion prompt as the llama.cpp provider. Generation runs token by token in a worker thread that stops
as soon as the consumer goes away, like llamacpp. With a JSON schema, the JSON-schema guidance of
onnxruntime-genai is used where the build supports it; the gateway validates citations either way.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from cairn_core import CairnError, ChatMessage, ReasonCode, StopReason, Usage

from ..models import check_memory, rss_mb
from ..models.files import cached_sha256
from ..models.prompt import FORMAT_STOPS, StopScanner, render_prompt
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ThreadedProvider


class OnnxGenAIProvider(ThreadedProvider):
    name = "onnx"

    def __init__(
        self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.model = spec.model or ""
        self.slots = max(1, int(spec.params.get("max_concurrency", settings.max_concurrency)))
        self.memory_limit_mb = int(spec.params.get("memory_limit_mb", settings.memory_limit_mb))
        self._model: Any = None
        self._tokenizer: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._memory_mb = 0.0
        self._guidance = True

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._executor = ThreadPoolExecutor(max_workers=self.slots + 1, thread_name_prefix="onnx-genai")

    def _load(self) -> None:
        folder = Path(self.spec.path or "").expanduser()
        if not self.spec.path or not (folder / "genai_config.json").is_file():
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                "The onnx provider needs LLM_ONNX_MODEL_DIR (or the model's path) to point at an "
                f"onnxruntime-genai model folder with a genai_config.json; got {str(folder)!r}.",
            )
        if self.spec.sha256:
            # A folder has no single digest: the declared sha256 is that of its model.onnx.
            onnx = next(iter(sorted(folder.glob("*.onnx"))), None)
            if onnx is None or cached_sha256(onnx) != self.spec.sha256.lower():
                raise CairnError(
                    ReasonCode.MODEL_REJECTED,
                    f"Refusing to load {folder}: its ONNX file does not match the declared sha256.",
                )
        check_memory(folder, self.memory_limit_mb)
        import onnxruntime_genai as og

        before = rss_mb()
        self._model = og.Model(str(folder))
        self._tokenizer = og.Tokenizer(self._model)
        self.model = self.model or folder.name
        self._memory_mb = rss_mb() - before

    async def aclose(self) -> None:
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._executor = None
        self._model = self._tokenizer = None

    async def health(self) -> bool:
        return self._executor is not None

    def info(self) -> dict[str, Any]:
        return {
            "state": "loaded" if self._executor else "not_loaded",
            "memory_mb": round(self._memory_mb, 1),
            "path": self.spec.path,
        }

    def _prompt(self, messages: list[ChatMessage], grounded: bool) -> str:
        try:
            rendered = self._tokenizer.apply_chat_template(
                json.dumps([{"role": m.role, "content": m.content} for m in messages]),
                add_generation_prompt=True,
            )
            if rendered:
                return str(rendered)
        except Exception:  # no chat template in this folder: a base model
            pass
        return render_prompt(messages, grounded)

    def _run(
        self, req: ProviderRequest, emit: Callable[[ProviderChunk], None], cancel: threading.Event
    ) -> None:
        import onnxruntime_genai as og

        grounded = req.json_schema is not None
        prompt = req.messages[0].content if req.raw else self._prompt(req.messages, grounded)
        tokens = self._tokenizer.encode(prompt)
        params = og.GeneratorParams(self._model)
        options: dict[str, Any] = {
            "max_length": len(tokens) + req.max_tokens,
            "temperature": max(req.temperature, 1e-5),
            "do_sample": req.temperature > 0,
        }
        if req.top_p is not None:
            options["top_p"] = req.top_p
        if req.seed is not None:
            options["random_seed"] = req.seed
        params.set_search_options(**options)
        if grounded and self._guidance:
            try:
                params.set_guidance("json_schema", json.dumps(req.json_schema))
            except Exception:  # this build has no guidance support: validation still guards citations
                self._guidance = False
        generator = og.Generator(self._model, params)
        generator.append_tokens(tokens)
        decoder = self._tokenizer.create_stream()
        scanner = StopScanner([] if grounded else req.stop, () if req.raw else FORMAT_STOPS)
        produced = 0
        while not generator.is_done() and produced < req.max_tokens and not cancel.is_set():
            generator.generate_next_token()
            produced += 1
            text = scanner.feed(decoder.decode(generator.get_next_tokens()[0]))
            if text:
                emit(ProviderChunk(text=text))
            if scanner.hit is not None:
                break
        if cancel.is_set():
            return
        if scanner.hit is None and (tail := scanner.flush()):
            emit(ProviderChunk(text=tail))
        if scanner.hit is not None:
            reason = StopReason.STOP if scanner.hit in scanner.user else StopReason.EOS
        else:
            reason = StopReason.LENGTH if produced >= req.max_tokens else StopReason.EOS
        emit(
            ProviderChunk(
                finish_reason=reason, usage=Usage(prompt_tokens=len(tokens), completion_tokens=produced)
            )
        )
