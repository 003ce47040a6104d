"""Model files and resources for the in-process providers: where a model comes from, whether it may be
loaded (its manifest, the memory guard), and the thread bridge that streams a blocking generator to asyncio."""

from .files import declared_manifest, load_gguf, packaged_gguf, resolve_gguf, sha256_file
from .manifest import ModelManifest, read_manifest, shipped
from .memory import check_memory, rss_mb
from .threaded import stream_in_thread

__all__ = [
    "ModelManifest",
    "check_memory",
    "declared_manifest",
    "load_gguf",
    "packaged_gguf",
    "read_manifest",
    "resolve_gguf",
    "rss_mb",
    "sha256_file",
    "shipped",
    "stream_in_thread",
]
