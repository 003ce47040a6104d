"""One generation on one llama.cpp instance, in the provider's worker thread.

`generate` renders the prompt in the model's format, turns a JSON answer's schema into a grammar, and samples
token by token: each token is handed on as it comes (`emit`), stop strings are cut out of the text, and the
cancel flag is checked once per token, so a client that goes away stops the model within a token. `extract`
is the grounded answer in one forward pass: the model picks the sentence that answers
(in_process/extractive.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cairn_core import CairnError, ReasonCode, StopReason, Usage

from ...in_process import extractive
from ...in_process.base_prompt import FORMAT_STOPS, StopScanner, render_prompt
from ..base import ProviderChunk, ProviderRequest
from .grammar import budget_schema, grammar_for, response_schema

if TYPE_CHECKING:
    from .provider import LlamaCppProvider

# Prompt tokens evaluated between two looks at how many generations share the cores.
_EVAL_PIECE = 64


def generate(
    p: LlamaCppProvider,
    llm: Any,
    req: ProviderRequest,
    emit: Callable[[ProviderChunk], None],
    cancel: threading.Event,
) -> None:
    p.fit_threads(llm)
    grounded = req.json_schema is not None
    if grounded and p.grounded_mode == "extractive" and req.context:
        extract(p, llm, req, emit)
        return
    tokens, format_stops = prompt_tokens(p, llm, req, grounded)
    asked = response_schema(req.openai.get("response_format"))
    if len(tokens) + req.max_tokens > p.n_ctx:
        raise CairnError(
            ReasonCode.TOKEN_LIMIT,
            f"The prompt ({len(tokens)} tokens) plus max_tokens={req.max_tokens} exceeds this model's "
            f"context of {p.n_ctx} tokens.",
        )
    grammar = None
    if grounded:
        grammar = grammar_for(budget_schema(req.json_schema or {}, req.max_tokens))
    elif asked is not None:
        grammar = grammar_for(asked)
    # JSON output is never cut by the caller's stop strings: the grammar decides where it ends. Neither a
    # raw prompt nor a requested JSON answer has the Q/A format whose stops would end it.
    json_out = grounded or asked is not None
    plain_format = grounded or not (req.raw or asked is not None)
    scanner = StopScanner([] if json_out else req.stop, format_stops if plain_format else ())
    sampled, finish = _sample(p, llm, req, tokens, grammar, scanner, emit, cancel)
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
    # The end-of-sequence token is sampled (and counted) but is not part of the answer.
    completion = max(0, sampled - (1 if reason == StopReason.EOS and scanner.hit is None else 0))
    usage = Usage(prompt_tokens=len(tokens), completion_tokens=min(completion, req.max_tokens))
    emit(ProviderChunk(finish_reason=reason, usage=usage))


def _sample(
    p: LlamaCppProvider,
    llm: Any,
    req: ProviderRequest,
    tokens: list[int],
    grammar: Any,
    scanner: StopScanner,
    emit: Callable[[ProviderChunk], None],
    cancel: threading.Event,
) -> tuple[int, str | None]:
    """Sample until the end, a stop string or a cancel; how many tokens were sampled, and llama.cpp's finish."""
    from llama_cpp import StoppingCriteriaList

    sampled = 0
    after_cancel = 0

    def stopping(_ids: Any, _logits: Any) -> bool:
        # Called once per sampled token: count it, and stop as soon as the consumer is gone or a stop
        # string was seen.
        nonlocal sampled, after_cancel
        sampled += 1
        p.fit_threads(llm)
        if cancel.is_set():
            after_cancel += 1
            return True
        return scanner.hit is not None

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
        with p.lock:
            c = p.counters
            c.generated += sampled
            if cancel.is_set():
                c.last_after_cancel = after_cancel
                c.max_after_cancel = max(c.max_after_cancel, after_cancel)
    return sampled, finish


def prompt_tokens(
    p: LlamaCppProvider, llm: Any, req: ProviderRequest, grounded: bool
) -> tuple[list[int], tuple[str, ...]]:
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
    elif p.template is None:
        text, stops = render_prompt(req.messages, grounded), FORMAT_STOPS
    elif req.prompt is not None and not grounded:
        text, stops = req.prompt, ()  # raw text is the caller's own format: no template, no Q:/A: stops
    else:
        text, stops = p.template.render(req.messages), ()
    return llm.tokenize(text.encode(), add_bos=True, special=True), stops


def extract(
    p: LlamaCppProvider, llm: Any, req: ProviderRequest, emit: Callable[[ProviderChunk], None]
) -> None:
    """One forward pass over the numbered sentences; the best one is the answer (in_process/extractive.py)."""
    import numpy as np
    from llama_cpp import llama_get_logits_ith

    sentences = extractive.number_sentences(req.context, min(len(p.digits), extractive.MAX_SENTENCES))
    prompt = extractive.render(sentences, extractive.question_of(req.messages))
    tokens = llm.tokenize(prompt.encode(), add_bos=True)
    if len(tokens) + 1 > p.n_ctx:
        raise CairnError(
            ReasonCode.TOKEN_LIMIT,
            f"The prompt ({len(tokens)} tokens) exceeds this model's context of {p.n_ctx} tokens.",
        )
    # Keep the KV cache of the part this prompt shares with the slot's last one (the fixed examples);
    # at least the last token is evaluated again, for its logits.
    shared = 0
    for a, b in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
        if a != b:
            break
        shared += 1
    llm.n_tokens = min(shared, len(tokens) - 1)
    with p.lock:
        p.counters.prompt_reused += llm.n_tokens
    # In pieces, so that a request arriving meanwhile gets its share of the cores at the next piece rather
    # than after the whole prompt (more threads than cores slows both).
    while llm.n_tokens < len(tokens):
        p.fit_threads(llm)
        llm.eval(tokens[llm.n_tokens : llm.n_tokens + _EVAL_PIECE])
    logits = np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
    # QS sends the sentences best first: a prior per position, in logits, weighs its ranking against
    # the model's reading (calibrated on the evaluation set, docs/eval.md).
    prior = -p.position_prior * np.arange(len(sentences), dtype=np.float32)
    choice = int(np.argmax(logits[p.digits[: len(sentences)]] + prior))
    with p.lock:
        p.counters.generated += 1
    quoted = extractive.quote(sentences, choice, p.quote_sentences)
    emit(ProviderChunk(text=extractive.as_grounded_json(quoted)))
    emit(
        ProviderChunk(
            finish_reason=StopReason.EOS,
            usage=Usage(prompt_tokens=len(tokens), completion_tokens=1),
        )
    )


def digit_tokens(llm: Any) -> list[int]:
    """The token of each digit 1-9 as it follows "[" (a tokenizer may merge a digit with what precedes it)."""
    head = llm.tokenize(b"Answer: [", add_bos=False)
    out = []
    for d in range(1, 10):
        ids = llm.tokenize(f"Answer: [{d}".encode(), add_bos=False)
        if ids[: len(head)] != head or len(ids) != len(head) + 1:
            break  # this tokenizer does not give single-token digits here: fewer choices
        out.append(ids[-1])
    return out
