"""The package-README set: the long descriptions (README files) of 30 packages this project installs.

Markdown and reStructuredText as their authors wrote them for PyPI, badges, HTML and all: documents nobody on
the project wrote, with the capitalised product and protocol names (HTTPX, WebSockets, Trio) and the
"Does X support Y?" questions that the Python reference set lacks. They come from the packages' metadata in
this checkout's environment (versions pinned by uv.lock), are written to a folder at eval time and uploaded
as files, as a user would; nothing is copied into the repository. The questions
(services/query/eval/readmes/questions.jsonl) were written from these texts before the stack was asked.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

PACKAGES = [
    "anyio",
    "attrs",
    "click",
    "httptools",
    "httpx",
    "idna",
    "Jinja2",
    "joblib",
    "markdown-it-py",
    "MarkupSafe",
    "numpy",
    "packaging",
    "platformdirs",
    "pydantic-settings",
    "pdfminer.six",
    "pytest",
    "pytest-asyncio",
    "python-multipart",
    "requests",
    "respx",
    "sniffio",
    "starlette",
    "structlog",
    "truststore",
    "urllib3",
    "uvicorn",
    "uvloop",
    "watchfiles",
    "websockets",
    "Werkzeug",
]


def files() -> dict[str, Path]:
    """Each package's README as `<name>.md` or `<name>.rst` (by its declared content type) in a new folder."""
    folder = Path(tempfile.mkdtemp(prefix="cairn-readmes-"))
    out = {}
    for name in PACKAGES:
        meta = importlib.metadata.metadata(name)
        kind = meta.get("Description-Content-Type") or "text/x-rst"
        path = folder / f"{name}.{'md' if 'markdown' in kind else 'rst'}"
        path.write_text(meta.get_payload() or "")  # type: ignore[attr-defined]
        out[path.name] = path
    return out
