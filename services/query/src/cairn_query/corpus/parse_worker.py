"""`python -m cairn_query.corpus.parse_worker KIND MEMORY_MB CPU_S [OPTIONS_JSON]`: read one file's bytes on
stdin, write its text (OPTIONS_JSON: `formats.ReadOptions`, the OCR settings).

The child side of `parsing.py`. Parsers can take minutes or gigabytes on crafted input (the stdlib's
html.parser is quadratic on `"<a " * n`; Markdown and reST nest without bound), so each parse runs here, in a process of its own with a
memory and a CPU limit, where the parent can kill it. Prints one JSON object on stdout:
`{"text": ..., "title": ...}`, or `{"error": message, "kind": "unreadable" | "too_complex"}`.
Standard library only (plus each format's library, imported when a file of that format is read): the
start-up time of this module is every upload's overhead.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys

from cairn_query.corpus.extract import ExtractError, extract_file
from cairn_query.corpus.formats import ReadOptions


def _limit(memory_mb: int, cpu_s: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The CPU limit is the backstop for a parent that died without killing us: SIGXCPU, then SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Parsing yields the CPU to the service's own request path.
    os.nice(10)


def main(argv: list[str]) -> int:
    kind, memory_mb, cpu_s = argv[0], int(argv[1]), int(argv[2])
    options = ReadOptions(**json.loads(argv[3])) if len(argv) > 3 else ReadOptions()
    _limit(memory_mb, cpu_s)
    # pdfminer warns on stderr about every repaired file; stderr is kept for real failures, which QS logs.
    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    data = sys.stdin.buffer.read()
    try:
        text, title = extract_file(kind, data, options)
        # A PDF's text can hold lone surrogates (broken ToUnicode maps); SQLite cannot store them.
        text = text.encode("utf-8", "replace").decode("utf-8")
        title = title.encode("utf-8", "replace").decode("utf-8") if title else None
        out: dict[str, object] = {"text": text, "title": title}
    except ExtractError as exc:
        out = {"error": str(exc), "kind": "unreadable"}
    except (MemoryError, RecursionError):
        out = {"error": "reading it needs more memory than the limit allows.", "kind": "too_complex"}
    except Exception as exc:  # a parser bug on odd input is still the file's problem, not a 500
        print(f"parse_worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        if "bad_alloc" in str(exc):  # a native library (ONNX Runtime for OCR) ran out of the memory limit
            out = {"error": "reading it needs more memory than the limit allows.", "kind": "too_complex"}
        else:
            out = {"error": f"The file could not be read: {type(exc).__name__}.", "kind": "unreadable"}
    sys.stdout.buffer.write(json.dumps(out, ensure_ascii=False).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
