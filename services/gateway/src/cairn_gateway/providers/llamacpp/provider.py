"""`LlamaCppProvider`: a GGUF loaded into llama.cpp, one instance per concurrency slot (the package docstring
says how it serves); its generations are in `generation.py`."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
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
from cairn_core import CairnError, ReasonCode

from ...in_process import ModelManifest, check_memory, load_gguf, rss_mb
from ...in_process.build import LLAMA_MISSING
from ...in_process.chat_template import ChatTemplate, PromptFormat, choose_format
from ...in_process.offload import Placement, n_gpu_layers, supports_gpu
from ...settings import GatewaySettings, ModelSpec
from ..base import ProviderChunk, ProviderRequest, ThreadedProvider
from .generation import digit_tokens, generate

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


@dataclass
class Counters:
    """Token accounting, visible in /v1/models: how many tokens ran after a cancel (the bound we promise)."""

    generated: int = 0
    prompt_reused: int = 0  # prompt tokens whose KV cache a slot kept from its previous request
    active: int = 0
    last_after_cancel: int = 0
    max_after_cancel: int = 0


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
        # The most threads one generation may use; `fit_threads` shares them out when several run at once.
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
        self.lock = threading.Lock()
        self.counters = Counters()
        self._threads_of: dict[int, int] = {}  # id(Llama) -> the thread count last set on it
        self.digits: list[int] = []  # token ids of "1".."9" after "[", for extractive answers
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
        self.digits = digit_tokens(first)
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
        with self.lock:
            self.counters.active += 1
        try:
            generate(self, llm, req, emit, cancel)
        finally:
            with self.lock:
                self.counters.active -= 1
            self._pool.put(llm)

    def fit_threads(self, llm: Any) -> None:
        """Give this generation its share of the cores: all of them alone, cores/k when k run at once."""
        from llama_cpp import llama_set_n_threads

        want = max(1, min(self.threads, self.cores // max(1, self.counters.active)))
        if self._threads_of.get(id(llm)) != want:
            llama_set_n_threads(llm.ctx, want, want)
            self._threads_of[id(llm)] = want
