"""In-process generation with llama.cpp (llama-cpp-python): any GGUF, by default the packaged Gemma 3 270M.

- The model is loaded in `start()` (the app's lifespan), in a thread: one `Llama` per concurrency slot, all
  mapping the same file (mmap), so weights are shared and each slot only adds its own KV cache.
- Threads follow the load: a generation alone gets every core, and when k run at once each gets cores/k,
  set again before every token (`fit_threads`). So a lone user's prompt runs at the 2-thread speed, while
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

Modules: `provider.py` (the load, slots and threads), `generation.py` (one generation: prompt, grammar,
sampling, the extractive answer), `grammar.py` (JSON schemas as llama.cpp grammars). The catalogue names the
class by this package (`cairn_gateway.providers.llamacpp:LlamaCppProvider`), so that path keeps working.
"""

from .generation import digit_tokens
from .grammar import json_grammar
from .provider import LlamaCppProvider, model_params

__all__ = ["LlamaCppProvider", "digit_tokens", "json_grammar", "model_params"]
