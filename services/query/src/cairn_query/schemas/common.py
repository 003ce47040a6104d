"""What the wire models share: names, metadata and filter checks, size limits."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field

_NAME = r"^[A-Za-z0-9._-]{1,64}$"
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Finite floats only: NaN (which a multipart `metadata` field can carry, json.loads takes it) would be stored as
# `NaN`, which is not JSON, and every filtered search over the store then failed in SQLite's json_extract.
MetadataValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
_METADATA_CHARS = 16_384  # as JSON; metadata is for filters and labels, not for content


def _lone_surrogate(s: str) -> bool:
    # JSON's "\ud800" escape decodes to a str that SQLite (and any UTF-8 writer) cannot store.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_metadata(v: Any) -> Any:
    """Readable refusals, before the type check, of what would break storing or filtering on it later."""
    if not isinstance(v, dict):
        raise ValueError("'metadata' must be a JSON object")
    for key, value in v.items():
        if isinstance(value, float) and not math.isfinite(value):
            # SQLite before 3.42 rejects the stored JSON, and every filtered search would fail with it.
            raise ValueError(f"metadata {key!r} must be a finite number, not {value}")
        if any(isinstance(s, str) and _lone_surrogate(s) for s in (key, value)):
            raise ValueError(f"metadata {key!r} holds a lone surrogate (not valid Unicode)")
    if len(json.dumps(v, ensure_ascii=False, default=str)) > _METADATA_CHARS:
        raise ValueError(f"metadata must be at most {_METADATA_CHARS} characters as JSON")
    return v


# Text caps. The body limit (12 MB, for uploads) is no cap on a question: a 960 KB question sent as
# `messages` went to retrieval and the model whole. The question itself is held to the same 4,000 characters
# as `query`; the conversation around it gets room for a few long answers, no more.
MAX_QUESTION_CHARS = 4000
MAX_MESSAGE_CHARS = 8000
MAX_CONVERSATION_CHARS = 32_000
MAX_FILTER_VALUE_CHARS = 500


def _check_filters(v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    # Keys become a JSON path in SQL: only plain names, and a handful of them.
    if len(v) > 10 or not all(_FILTER_KEY.match(k) for k in v):
        raise ValueError("at most 10 filters, keys of letters, digits, '_' or '-'")
    if any(isinstance(x, str) and len(x) > MAX_FILTER_VALUE_CHARS for x in v.values()):
        raise ValueError(f"filter values of at most {MAX_FILTER_VALUE_CHARS} characters")
    return v


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
