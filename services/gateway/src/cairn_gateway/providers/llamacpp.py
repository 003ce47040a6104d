"""In-process generation with llama.cpp (llama-cpp-python): any GGUF, by default the packaged Gemma 3 270M.

- The model is loaded in `start()` (the app's lifespan), in a thread: one `Llama` per concurrency slot, all
  mapping the same file (mmap), so weights are shared and each slot only adds its own KV cache.
- Threads follow the load: a generation alone gets every core, and when k run at once each gets cores/k,
  set again before every token (`_fit_threads`). So a lone user's prompt runs at the 2-thread speed, while
  two users together get today's throughput of two 1-thread slots, and never more threads than cores.
- Each generation runs in a worker thread (`models.stream_in_thread`) that hands text to the event loop token
  by token, and checks a cancel flag per token through llama.cpp's `stopping_criteria`: a disconnect or a
  timeout stops it within a token.
- Gemma 3 270M is a base model with no chat template, so messages are rendered into a plain completion prompt
  (see `render_prompt` and docs/models.md); `chat_format="gemma"` makes it echo the question. An instruct
  GGUF whose metadata has a chat template gets its messages rendered with it (`in_process/chat_template.py`,
  LLM_PROMPT_FORMAT); a raw `prompt` is never templated. A raw prompt from `/v1/completions`
  goes to the model as is, ended only by the caller's stop strings.
- Layers go to the GPU when this llama.cpp build can offload (`in_process/offload.py`, LLM_GPU_LAYERS).
- OpenAI's `response_format` `json_object` / `json_schema` becomes a grammar, as the citation schema does.
- Grounded requests are extractive by default (`in_process/extractive.py`): the model picks the source sentence
  that answers, in one forward pass, and the answer quotes it. `LLM_GROUNDED_MODE=json` instead turns the
  citation JSON schema (whose `chunk_id` is an enum of the retrieved ids) into a llama.cpp grammar.
- Each slot keeps its KV cache between requests, and a prompt that starts like the previous one (the fixed
  instructions and examples) re-evaluates only what differs.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

import aiohttp
from cairn_core import CairnError, ReasonCode, StopReason, Usage

from ..in_process import ModelManifest, check_memory, extractive, load_gguf, rss_mb
from ..in_process.base_prompt import FORMAT_STOPS, StopScanner, render_prompt
from ..in_process.build import LLAMA_MISSING
from ..in_process.chat_template import ChatTemplate, PromptFormat, choose_format
from ..in_process.offload import Placement, n_gpu_layers, supports_gpu
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ThreadedProvider

# JSON punctuation around the answer and each citation, in tokens, when budgeting the answer's length.
JSON_OVERHEAD_TOKENS = 12
CITATION_TOKENS = 10
# The least a grounded JSON answer needs: its punctuation, one citation and one character of answer.
GROUNDED_MIN_TOKENS = JSON_OVERHEAD_TOKENS + CITATION_TOKENS + 1
# Prompt tokens evaluated between two looks at how many generations share the cores.
_EVAL_PIECE = 64
# What `probe()` evaluates: long enough (~60 tokens) for the batched matrix kernels to run, not just the
# one-token ones.
_PROBE_PROMPT = (
    "Sentences:\n[1] The library opens at 9 am and closes at 6 pm on weekdays.\n[2] On Saturdays it opens "
    "at 10 am.\n[3] A library card costs 5 euros per year and is free for students.\nQuestion: When does "
    "the library open on Saturdays?\nAnswer: ["
)


@contextmanager
def model_params(extra_bufts: bool) -> Iterator[None]:
    """Models loaded in the block use llama.cpp's extra buffer types, or not.

    llama-cpp-python's `Llama()` has no argument for `use_extra_bufts` (llama.cpp's own model parameter), but
    it takes its parameters from `llama_model_default_params()` at load; the block swaps that function for one
    that turns the field off. Only worker processes and single-model loads run this, one load at a time."""
    if extra_bufts:
        yield
        return
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def without_extra_bufts() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_extra_bufts
    try:
        yield
    finally:
        native.llama_model_default_params = original


def budget_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """Bound the answer string so the JSON can close within `max_tokens` (a token is at least one char).

    Below GROUNDED_MIN_TOKENS no answer fits: the grammar would be cut before the JSON closes, so the request is
    refused rather than answered with broken JSON."""
    if max_tokens < GROUNDED_MIN_TOKENS:
        raise CairnError(
            ReasonCode.TOKEN_LIMIT,
            f"max_tokens={max_tokens} is too small for a grounded answer: its JSON with one citation needs "
            f"at least {GROUNDED_MIN_TOKENS} tokens.",
        )
    out = json.loads(json.dumps(schema))
    citations = out.get("properties", {}).get("citations", {})
    max_items = int(citations.get("maxItems", 5))
    room = max_tokens - JSON_OVERHEAD_TOKENS - CITATION_TOKENS * max_items
    if room < 8:  # a tiny budget: one citation only, and whatever answer fits
        citations["maxItems"] = max_items = 1
        room = max_tokens - JSON_OVERHEAD_TOKENS - CITATION_TOKENS
    answer = out.get("properties", {}).get("answer")
    if isinstance(answer, dict):
        answer["maxLength"] = room
    return out


def json_grammar(schema: dict[str, Any]) -> str:
    """GBNF for the schema, with raw control characters barred from strings.

    llama-cpp-python's converter lets a string hold a raw newline (`char ::= [^"\\] | ...`), which JSON
    forbids and Gemma readily writes; the rule below is the JSON spec's (and llama.cpp's own converter's).
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    lines = json_schema_to_gbnf(json.dumps(schema)).splitlines()
    return "\n".join(_JSON_CHAR if line.startswith("char ::= ") else line for line in lines)


_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


@dataclass
class _Counters:
    """Token accounting, visible in /v1/models: how many tokens ran after a cancel (the bound we promise)."""

    generated: int = 0
    prompt_reused: int = 0  # prompt tokens whose KV cache a slot kept from its previous request
    active: int = 0
    last_after_cancel: int = 0
    max_after_cancel: int = 0


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for: any JSON object for `json_object`, else its schema."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


class LlamaCppProvider(ThreadedProvider):
    name = "llamacpp"
    # Runs in a worker process the gateway owns (providers/isolated.py) unless LLM_MODEL_ISOLATION=none.
    isolable = True
    response_formats = ("json_object", "json_schema")  # through a grammar (openai_fields.py)

    def __init__(
        self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.slots = max(1, int(spec.params.get("max_concurrency", settings.max_concurrency)))
        self.cores = os.cpu_count() or 1
        # The most threads one generation may use; `_fit_threads` shares them out when several run at once.
        self.threads = int(spec.params.get("threads", settings.threads or self.cores))
        self.grounded_mode = str(spec.params.get("grounded_mode", settings.grounded_mode))
        self.position_prior = float(spec.params.get("position_prior", settings.extractive_position_prior))
        self.quote_sentences = int(spec.params.get("quote_sentences", settings.extractive_sentences))
        self.n_ctx = int(spec.params.get("context_size", settings.context_size))
        self.memory_limit_mb = int(spec.params.get("memory_limit_mb", settings.memory_limit_mb))
        self.prompt_format_setting = str(spec.params.get("prompt_format", settings.prompt_format))
        self.gpu_layers_setting = str(spec.params.get("gpu_layers", settings.gpu_layers))
        self.prompt_format: PromptFormat = "base"
        self.template: ChatTemplate | None = None  # the GGUF's own, when prompt_format is chat_template
        self.placement = Placement(gpu_layers=0, total_layers=0)
        self.model = spec.model or ""
        self.path: Path | None = None
        self.manifest: ModelManifest | None = None  # set by the load, before llama.cpp is asked
        self._pool: Queue[Any] = Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._memory_mb = 0.0
        self._lock = threading.Lock()
        self.counters = _Counters()
        self._threads_of: dict[int, int] = {}  # id(Llama) -> the thread count last set on it
        self._digits: list[int] = []  # token ids of "1".."9" after "[", for extractive answers
        self.extra_bufts: bool | None = None  # as loaded: llama.cpp's AMX / repacked-weight buffer types

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        """The whole load in this process (LLM_MODEL_ISOLATION=none); the worker process does the same in
        two steps, `prepare()` in the gateway and `load_resolved()` in the worker (providers/isolated.py)."""
        self.load_resolved(str(self.prepare()), self.settings.extra_bufts != "off")

    def prepare(self) -> Path:
        """Everything before llama.cpp is asked: the file, its manifest, the context size, the memory guard.

        A file that is not the one its manifest describes is refused whether or not llama.cpp is there to load
        it (on a first run it may still be compiling)."""
        found = load_gguf(self.spec.path, self.spec.sha256, self.settings.model_cache_dir)
        self.manifest = found.manifest
        trained = found.manifest.parameters.context_size
        if trained is not None and self.n_ctx > trained:
            raise CairnError(
                ReasonCode.MODEL_REJECTED,
                f"LLM_CONTEXT_SIZE={self.n_ctx} exceeds the {trained} tokens {found.path.name} was trained for "
                f"(its manifest {found.manifest.location}); set LLM_CONTEXT_SIZE or params.context_size lower.",
            )
        importlib.invalidate_caches()  # setup.sh may have installed it since the last try (first run)
        if importlib.util.find_spec("llama_cpp") is None:
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                f"{LLAMA_MISSING}: run `make setup` (it builds llama.cpp once per machine).",
            )
        # Each slot adds its KV cache: about 64 MiB per 1k tokens of context for Gemma 3 270M (measured).
        check_memory(found.path, self.memory_limit_mb, overhead_mb=64.0 * self.n_ctx / 1024 * self.slots)
        self.model = self.model or found.path.stem
        return found.path

    def load_resolved(self, path_str: str, extra_bufts: bool = True) -> None:
        """Load the checked file into llama.cpp, one instance per slot. `extra_bufts=False` keeps llama.cpp off
        its extra buffer types (AMX and repacked weights), whose kernels fault on some CPUs (docs/models.md)."""
        path = Path(path_str)
        try:
            from llama_cpp import Llama
        except ImportError:
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                f"{LLAMA_MISSING}: run `make setup` (it builds llama.cpp once per machine).",
            ) from None
        try:
            gpu_layers = n_gpu_layers(self.gpu_layers_setting, supports_gpu)
        except ValueError as exc:
            raise CairnError(ReasonCode.MODEL_REJECTED, f"gpu_layers: {exc}") from None
        before = rss_mb()
        try:
            with model_params(extra_bufts):
                instances = [
                    Llama(
                        model_path=str(path),
                        n_ctx=self.n_ctx,
                        n_threads=self.threads,
                        n_threads_batch=self.threads,
                        n_gpu_layers=gpu_layers,
                        seed=int(self.spec.params.get("seed", 0xC41F)),
                        verbose=False,
                    )
                    for _ in range(self.slots)
                ]
        except ValueError as exc:  # llama-cpp-python's way of saying the file is not a loadable model
            raise CairnError(ReasonCode.MODEL_REJECTED, f"llama.cpp could not load {path}: {exc}") from None
        for llm in instances:
            self._pool.put(llm)
        first = instances[0]
        self.prompt_format = choose_format(self.prompt_format_setting, first.metadata, path)
        self.template = ChatTemplate.of(first) if self.prompt_format == "chat_template" else None
        self.placement = Placement.of(gpu_layers, first.metadata)
        self.path = path
        self.model = self.model or path.stem
        self._digits = _digit_tokens(first)
        self._memory_mb = max(rss_mb() - before, path.stat().st_size / (1 << 20))
        self.extra_bufts = extra_bufts
        self._executor = ThreadPoolExecutor(
            max_workers=self.slots + 1, thread_name_prefix=f"llamacpp-{self.spec.alias}"
        )

    def probe(self) -> None:
        """A short prompt and two sampled tokens on one slot: batched and single-token matrix products both
        run once, so a CPU kernel that faults here (AMX in some VMs) kills the worker before any user's
        request does, and the gateway can load the model the safe way (providers/isolated.py)."""
        llm = self._pool.queue[0]
        llm.create_completion(_PROBE_PROMPT, max_tokens=2, temperature=0.0)

    async def aclose(self) -> None:
        if self._executor is not None:
            # Running generations see their consumer gone and stop within a token; wait for them.
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._executor = None
        while not self._pool.empty():
            llm = self._pool.get_nowait()
            close = getattr(llm, "close", None)
            if close is not None:
                close()

    async def health(self) -> bool:
        return self._executor is not None

    def info(self) -> dict[str, Any]:
        c = self.counters
        return {
            "state": "loaded" if self._executor is not None else "not_loaded",
            "memory_mb": round(self._memory_mb, 1),
            "path": str(self.path) if self.path else None,
            "slots": self.slots,
            "threads": self.threads,
            "threads_policy": "all cores for a lone generation, cores/k for k at once",
            "grounded_mode": self.grounded_mode,
            "prompt_format": self.prompt_format,
            "device": self.placement.device,
            "gpu_layers": self.placement.gpu_layers,
            "layers": self.placement.total_layers,
            "context_size": self.n_ctx,
            "extra_bufts": self.extra_bufts,
            "generating": c.active,
            "tokens_generated": c.generated,
            "prompt_tokens_reused": c.prompt_reused,
            "tokens_after_cancel_last": c.last_after_cancel,
            "tokens_after_cancel_max": c.max_after_cancel,
        }

    # --- generation ------------------------------------------------------------------------------------

    def _run(
        self, req: ProviderRequest, emit: Callable[[ProviderChunk], None], cancel: threading.Event
    ) -> None:
        """The worker thread: borrow a model instance, generate, give the instance back."""
        llm = self._pool.get()  # admission keeps this short: at most a token's wait for a cancelled run
        with self._lock:
            self.counters.active += 1
        try:
            self._generate(llm, req, emit, cancel)
        finally:
            with self._lock:
                self.counters.active -= 1
            self._pool.put(llm)

    def _fit_threads(self, llm: Any) -> None:
        """Give this generation its share of the cores: all of them alone, cores/k when k run at once."""
        from llama_cpp import llama_set_n_threads

        want = max(1, min(self.threads, self.cores // max(1, self.counters.active)))
        if self._threads_of.get(id(llm)) != want:
            llama_set_n_threads(llm.ctx, want, want)
            self._threads_of[id(llm)] = want

    def _generate(
        self, llm: Any, req: ProviderRequest, emit: Callable[[ProviderChunk], None], cancel: threading.Event
    ) -> None:
        self._fit_threads(llm)
        grounded = req.json_schema is not None
        if grounded and self.grounded_mode == "extractive" and req.context:
            self._extract(llm, req, emit)
            return
        tokens, format_stops = self._prompt(llm, req, grounded)
        asked = response_schema(req.openai.get("response_format"))
        prompt_tokens = len(tokens)
        if prompt_tokens + req.max_tokens > self.n_ctx:
            raise CairnError(
                ReasonCode.TOKEN_LIMIT,
                f"The prompt ({prompt_tokens} tokens) plus max_tokens={req.max_tokens} exceeds this model's "
                f"context of {self.n_ctx} tokens.",
            )
        grammar = None
        if grounded or asked is not None:
            from llama_cpp import LlamaGrammar

            schema = budget_schema(req.json_schema or {}, req.max_tokens) if grounded else asked
            try:
                grammar = LlamaGrammar.from_string(json_grammar(schema or {}), verbose=False)
            except (
                Exception
            ) as exc:  # a schema the converter cannot turn into a grammar is the caller's error
                raise CairnError(
                    ReasonCode.BAD_REQUEST, f"response_format: llama.cpp cannot enforce this schema: {exc}"
                ) from None
        # JSON output is never cut by the caller's stop strings: the grammar decides where it ends. Neither a
        # raw prompt nor a requested JSON answer has the Q/A format whose stops would end it.
        json_out = grounded or asked is not None
        plain_format = grounded or not (req.raw or asked is not None)
        scanner = StopScanner([] if json_out else req.stop, format_stops if plain_format else ())
        sampled = 0
        after_cancel = 0

        def stopping(_ids: Any, _logits: Any) -> bool:
            # Called once per sampled token: count it, and stop as soon as the consumer is gone or a stop
            # string was seen.
            nonlocal sampled, after_cancel
            sampled += 1
            self._fit_threads(llm)
            if cancel.is_set():
                after_cancel += 1
                return True
            return scanner.hit is not None

        from llama_cpp import StoppingCriteriaList

        finish: str | None = None
        try:
            for part in llm.create_completion(
                tokens,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                top_p=req.top_p if req.top_p is not None else 0.95,
                seed=req.seed,
                stream=True,
                grammar=grammar,
                stopping_criteria=StoppingCriteriaList([stopping]),
            ):
                choice = part["choices"][0]
                finish = choice.get("finish_reason") or finish
                text = scanner.feed(choice.get("text") or "")
                if text:
                    emit(ProviderChunk(text=text))
                if scanner.hit is not None or cancel.is_set():
                    break
        finally:
            with self._lock:
                c = self.counters
                c.generated += sampled
                if cancel.is_set():
                    c.last_after_cancel = after_cancel
                    c.max_after_cancel = max(c.max_after_cancel, after_cancel)
        if cancel.is_set():
            return
        tail = scanner.flush() if scanner.hit is None else ""
        if tail:
            emit(ProviderChunk(text=tail))
        if scanner.hit is not None:
            reason = StopReason.STOP if scanner.hit in scanner.user else StopReason.EOS
        elif finish == "length":
            reason = StopReason.LENGTH
        else:
            reason = StopReason.EOS
        # The end-of-sequence token is sampled (and counted above) but is not part of the answer.
        completion = max(0, sampled - (1 if reason == StopReason.EOS and scanner.hit is None else 0))
        emit(
            ProviderChunk(
                finish_reason=reason,
                usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=min(completion, req.max_tokens)),
            )
        )

    def _prompt(self, llm: Any, req: ProviderRequest, grounded: bool) -> tuple[list[int], tuple[str, ...]]:
        """The tokens the model sees, and the stop strings of their format.

        Special-token texts are parsed (`<start_of_turn>` is one token, as the template means it), as
        llama.cpp's own completion does, and the bos token is the tokenizer's, added once. A chat template
        model ends its turn with an end-of-generation token, so only the base format needs stop strings.
        Grounded requests in json mode render their system (instructions and sources) and user messages
        through the template too: an instruct model reads instructions in its own format best, and the
        grammar holds the output to the JSON either way.
        """
        stops: tuple[str, ...]
        if req.raw:  # `/v1/completions`: the caller's text exactly, in no format of ours
            text, stops = req.messages[0].content, ()
        elif self.template is None:
            text, stops = render_prompt(req.messages, grounded), FORMAT_STOPS
        elif req.prompt is not None and not grounded:
            text, stops = req.prompt, ()  # raw text is the caller's own format: no template, no Q:/A: stops
        else:
            text, stops = self.template.render(req.messages), ()
        return llm.tokenize(text.encode(), add_bos=True, special=True), stops

    def _extract(self, llm: Any, req: ProviderRequest, emit: Callable[[ProviderChunk], None]) -> None:
        """One forward pass over the numbered sentences; the best one is the answer (in_process/extractive.py)."""
        import numpy as np
        from llama_cpp import llama_get_logits_ith

        sentences = extractive.number_sentences(req.context, min(len(self._digits), extractive.MAX_SENTENCES))
        prompt = extractive.render(sentences, extractive.question_of(req.messages))
        tokens = llm.tokenize(prompt.encode(), add_bos=True)
        if len(tokens) + 1 > self.n_ctx:
            raise CairnError(
                ReasonCode.TOKEN_LIMIT,
                f"The prompt ({len(tokens)} tokens) exceeds this model's context of {self.n_ctx} tokens.",
            )
        # Keep the KV cache of the part this prompt shares with the slot's last one (the fixed examples);
        # at least the last token is evaluated again, for its logits.
        shared = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
            if a != b:
                break
            shared += 1
        llm.n_tokens = min(shared, len(tokens) - 1)
        with self._lock:
            self.counters.prompt_reused += llm.n_tokens
        # In pieces, so that a request arriving meanwhile gets its share of the cores at the next piece rather
        # than after the whole prompt (more threads than cores slows both).
        while llm.n_tokens < len(tokens):
            self._fit_threads(llm)
            llm.eval(tokens[llm.n_tokens : llm.n_tokens + _EVAL_PIECE])
        logits = np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        # QS sends the sentences best first: a prior per position, in logits, weighs its ranking against
        # the model's reading (calibrated on the evaluation set, docs/eval.md).
        prior = -self.position_prior * np.arange(len(sentences), dtype=np.float32)
        choice = int(np.argmax(logits[self._digits[: len(sentences)]] + prior))
        with self._lock:
            self.counters.generated += 1
        quoted = extractive.quote(sentences, choice, self.quote_sentences)
        emit(ProviderChunk(text=extractive.as_grounded_json(quoted)))
        emit(
            ProviderChunk(
                finish_reason=StopReason.EOS,
                usage=Usage(prompt_tokens=len(tokens), completion_tokens=1),
            )
        )


def _digit_tokens(llm: Any) -> list[int]:
    """The token of each digit 1-9 as it follows "[" (a tokenizer may merge a digit with what precedes it)."""
    head = llm.tokenize(b"Answer: [", add_bos=False)
    out = []
    for d in range(1, 10):
        ids = llm.tokenize(f"Answer: [{d}".encode(), add_bos=False)
        if ids[: len(head)] != head or len(ids) != len(head) + 1:
            break  # this tokenizer does not give single-token digits here: fewer choices
        out.append(ids[-1])
    return out
