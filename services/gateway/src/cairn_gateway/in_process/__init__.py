"""Model files and resources for the in-process providers: where a model comes from, whether it may be
loaded (sha256 manifest, memory guard), and the thread bridge that streams a blocking generator to asyncio."""

from .files import packaged_gguf, resolve_gguf, sha256_file, verify_sha256
from .memory import check_memory, rss_mb
from .threaded import stream_in_thread

__all__ = [
    "check_memory",
    "packaged_gguf",
    "resolve_gguf",
    "rss_mb",
    "sha256_file",
    "stream_in_thread",
    "verify_sha256",
]
