"""The metadata of a GGUF file, read from its header without loading the model, for a first load's manifest.

The `gguf` package's reader parses every tensor and array too (15 s for Gemma 3 270M's 262k-entry vocabulary
on our 2-core VM), and llama.cpp's metadata exists only after a load that may not happen (llama.cpp still
compiling on a first run), so this reads the key-value section itself: scalars and strings are kept, arrays
are skipped. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2 and 3).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from cairn_core import CairnError, ReasonCode

_MAGIC = b"GGUF"
# GGUF value types: struct format of the fixed-size ones; 8 is a string, 9 an array.
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_MAX_KV = 100_000  # a sane bound: a corrupt count must not make us walk the whole file

# llama.cpp's `llama_ftype` (general.file_type): the quantisation most of the tensors have.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0",
}  # fmt: skip


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("a string runs past the end of the file")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_array(self) -> None:
        kind, n = self.take("<I"), self.take("<Q")
        if kind in _SCALARS:
            self.pos += n * struct.calcsize(_SCALARS[kind])
        elif kind == _STRING:
            for _ in range(n):
                length = self.take("<Q")  # read before adding: `pos += take()` would add to the old pos
                self.pos += length
        else:  # arrays of arrays exist in the spec but not in llama.cpp's files
            for _ in range(n):
                self.value(kind)
        if self.pos > len(self.buf):
            raise ValueError("an array runs past the end of the file")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            self.skip_array()
            return None
        raise ValueError(f"unknown value type {kind}")


def read_metadata(path: Path) -> dict[str, Any]:
    """The scalar and string key-values of a GGUF file's header; MODEL_REJECTED when it is not one."""
    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != _MAGIC:
                raise ValueError("it does not start with the GGUF magic bytes")
            cur = _Cursor(buf)
            cur.pos = 4
            version = cur.take("<I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} is not supported (2 or 3)")
            cur.take("<Q")  # tensor count
            count = cur.take("<Q")
            if count > _MAX_KV:
                raise ValueError(f"{count} metadata entries is not plausible")
            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(count):
                key = cur.string()
                value = cur.value(cur.take("<I"))
                if value is not None:
                    meta[key] = value
            return meta
    except (OSError, ValueError, struct.error) as exc:
        raise CairnError(ReasonCode.MODEL_REJECTED, f"{path} is not a readable GGUF file: {exc}") from None


def describe(meta: dict[str, Any]) -> dict[str, Any]:
    """What a manifest records from the metadata; None where the file does not say."""
    arch = meta.get("general.architecture")
    file_type = meta.get("general.file_type")
    context = meta.get(f"{arch}.context_length") if arch else None
    return {
        "name": meta.get("general.name"),
        "licence": meta.get("general.license"),
        "source_url": meta.get("general.source.url")
        or meta.get("general.url")
        or meta.get("general.base_model.0.repo_url"),
        "context_size": int(context) if isinstance(context, int) and context > 0 else None,
        "quantisation": FILE_TYPES.get(file_type, f"file_type {file_type}")
        if isinstance(file_type, int)
        else None,
        "prompt_format": "chat_template" if meta.get("tokenizer.chat_template") else "base",
    }
