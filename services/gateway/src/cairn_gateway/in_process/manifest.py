"""Model manifests: what a model is, where it came from, under which licence, and the file it must be.

Every model the gateway can run in its own process has one (docs/models.md, "Model manifests"):
- the shipped models' manifests are JSON files in `cairn_gateway/manifests/`, packaged with the service;
- a user's GGUF (`LLM_MODEL_PATH`, `path` in `LLM_MODELS`) gets one written at its first load (`in_process/files.py`).

A manifest is enforced at every load: the file's size and its full sha256 must be the manifest's, else the
model is refused with `MODEL_REJECTED`. The sha256 is computed afresh by each load, never taken from a cache
keyed on size and mtime, so a file swapped for one of the same size with the old mtime is caught.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from cairn_core import CairnError, ReasonCode
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

# Names of the shipped manifests (files `<name>.json` in cairn_gateway/manifests/).
PACKAGED_GGUF = "gemma-3-270m-q4_k_m"
MINILM = "all-MiniLM-L6-v2-onnx-int8"
# Providers whose models are served by another process (an OpenAI-compatible server): that server, not the
# gateway, loads the weights, so the gateway has no file to pin.
REMOTE_PROVIDERS = frozenset({"openai_compat", "router"})

PromptFormat = Literal["base", "chat_template", "none"]


class ManifestParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context_size: int | None = Field(None, ge=1)  # tokens the model was trained for; None when unknown
    quantisation: str | None = None  # "Q4_K_M", "int8", ...; None when unknown or not applicable


class ModelManifest(BaseModel):
    """One model's manifest. `file`, `size_bytes` and `sha256` are all set (a model file) or all None (a
    provider with no weights, such as `toy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest_version: Literal[1] = 1
    name: str = Field(min_length=1)
    kind: Literal["generation", "embedding"]
    provider: str = Field(min_length=1)
    file: str | None = None
    size_bytes: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    licence: str = Field(min_length=1)
    licence_url: str | None = None
    source: str = Field(min_length=1)  # where the model came from, in words
    source_url: str | None = None
    parameters: ManifestParameters = Field(default_factory=ManifestParameters)
    prompt_format: PromptFormat
    written_at: str | None = None  # set on manifests the gateway wrote at a first load; None when shipped

    _location: Path | None = PrivateAttr(None)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _file_fields_together(self) -> ModelManifest:
        given = [self.file is not None, self.size_bytes is not None, self.sha256 is not None]
        if any(given) and not all(given):
            raise ValueError(
                "file, size_bytes and sha256 go together: all three, or none for a model with no file"
            )
        return self

    @property
    def location(self) -> Path | None:
        """The file this manifest was read from or written to."""
        return self._location

    def at(self, location: Path | None) -> ModelManifest:
        self._location = location
        return self

    def listing(self) -> dict[str, Any]:
        """The manifest as `/v1/models` shows it, with where it lives and whether it was shipped."""
        return {
            **self.model_dump(mode="json"),
            "origin": "shipped" if self.written_at is None else "first_load",
            "manifest_path": str(self._location) if self._location else None,
        }

    def check(self, path: Path, size: int, sha256: str, remedy: str) -> None:
        """Refuse `path` unless it is the file this manifest describes. `remedy`: how to accept a new file."""
        if self.sha256 is None:
            raise CairnError(ReasonCode.MODEL_REJECTED, f"The manifest {self._location} describes no file.")
        if size != self.size_bytes or sha256 != self.sha256:
            raise CairnError(
                ReasonCode.MODEL_REJECTED,
                f"Refusing to load {path}: it is not the file its manifest {self._location} describes "
                f"(manifest: {self.size_bytes} bytes, sha256 {self.sha256}; file: {size} bytes, sha256 "
                f"{sha256}). {remedy}",
            )


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )


def parse_manifest(text: str, location: Path | None = None) -> ModelManifest:
    """A manifest from its JSON text; a clear MODEL_REJECTED naming the file and every bad field otherwise."""
    where = str(location) if location else "manifest"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CairnError(ReasonCode.MODEL_REJECTED, f"{where} is not valid JSON: {exc}") from None
    try:
        return ModelManifest.model_validate(data).at(location)
    except ValidationError as exc:
        raise CairnError(
            ReasonCode.MODEL_REJECTED, f"{where} is not a valid model manifest: {_errors(exc)}"
        ) from None


def read_manifest(path: Path) -> ModelManifest:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CairnError(ReasonCode.MODEL_REJECTED, f"Cannot read the manifest {path}: {exc}") from None
    return parse_manifest(text, path)


def shipped(name: str) -> ModelManifest:
    """A manifest shipped with the gateway (`cairn_gateway/manifests/<name>.json`)."""
    resource = files("cairn_gateway").joinpath("manifests", f"{name}.json")
    return parse_manifest(resource.read_text(encoding="utf-8"), Path(str(resource)))


def shipped_names() -> list[str]:
    folder = files("cairn_gateway").joinpath("manifests")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def write_manifest(path: Path, manifest: ModelManifest) -> ModelManifest:
    """Write beside a temporary name and rename, so that a crash never leaves half a manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return manifest.at(path)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
