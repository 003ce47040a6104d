"""Where llama.cpp runs a model: how many of its layers go to the GPU (LLM_GPU_LAYERS).

`auto` (the default) offloads every layer when this llama.cpp build can use a GPU (a CUDA, Metal or Vulkan
build, `llama_supports_gpu_offload()`), and none otherwise, so the same settings serve a laptop and a GPU
box. An integer offloads that many layers (the rest stay on the CPU: for a model larger than the GPU's
memory), `0` or `none` keeps everything on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("llamacpp")

AUTO = "auto"
ALL_LAYERS = -1  # llama.cpp's n_gpu_layers for "every layer"


def parse_gpu_layers(value: str | int) -> str | int:
    """`auto`, or a layer count: `none` is 0 and -1 (or `all`) is every layer. Raises ValueError."""
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if text in ("none", ""):
        return 0
    if text == "all":
        return ALL_LAYERS
    layers = int(text)  # ValueError for anything else
    if layers < ALL_LAYERS:
        raise ValueError(f"gpu_layers must be auto, none, all or an integer >= -1, not {value!r}")
    return layers


def n_gpu_layers(setting: str | int, supports_gpu: Callable[[], bool]) -> int:
    """The `n_gpu_layers` to give `Llama()`: 0 whenever this build cannot offload at all."""
    wanted = parse_gpu_layers(setting)
    if wanted == AUTO:
        return ALL_LAYERS if supports_gpu() else 0
    assert isinstance(wanted, int)
    if wanted != 0 and not supports_gpu():
        # A CPU-only build ignores the request anyway; say so instead of reporting layers that are not there.
        log.warning("gpu_offload_unavailable", gpu_layers=wanted, hint="CAIRN_LLAMA_CUDA=1 make setup")
        return 0
    return wanted


def supports_gpu() -> bool:
    from llama_cpp import llama_supports_gpu_offload

    return bool(llama_supports_gpu_offload())


@dataclass(frozen=True, slots=True)
class Placement:
    """What /v1/models reports: the layers on the GPU out of the model's total, as llama.cpp counts them
    (its repeating blocks plus the output layer: "offloaded 19/19 layers" for Gemma 3 270M)."""

    gpu_layers: int
    total_layers: int

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_layers > 0 else "cpu"

    @classmethod
    def of(cls, n_gpu_layers: int, metadata: dict[str, Any]) -> Placement:
        arch = metadata.get("general.architecture", "")
        total = int(metadata.get(f"{arch}.block_count", 0)) + 1
        layers = total if n_gpu_layers == ALL_LAYERS else min(n_gpu_layers, total)
        return cls(gpu_layers=max(0, layers), total_layers=total)
