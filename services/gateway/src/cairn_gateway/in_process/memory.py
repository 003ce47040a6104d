"""The memory guard: refuse a model that would not fit, with a clear error instead of an OOM kill."""

from __future__ import annotations

import os
from pathlib import Path

from cairn_core import CairnError, ReasonCode


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux; 0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def model_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / (1 << 20)
    return path.stat().st_size / (1 << 20)


def check_memory(path: Path, limit_mb: int, overhead_mb: float = 0.0) -> float:
    """Estimated MiB the model needs (its weights plus `overhead_mb` for caches); raises when over a limit."""
    need = model_size_mb(path) + overhead_mb
    if need > limit_mb:
        raise CairnError(
            ReasonCode.MODEL_REJECTED,
            f"Refusing to load {path.name}: it needs about {need:.0f} MiB, over LLM_MEMORY_LIMIT_MB={limit_mb}. "
            "Raise the limit or choose a smaller model.",
        )
    free = available_mb()
    if free is not None and need > free:
        raise CairnError(
            ReasonCode.MODEL_REJECTED,
            f"Refusing to load {path.name}: it needs about {need:.0f} MiB and only {free:.0f} MiB are free.",
        )
    return need
