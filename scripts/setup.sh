#!/usr/bin/env bash
# Create or refresh .venv from uv.lock. Safe to re-run: uv only does what changed, and the llama-cpp-python
# build (it has no wheel for this platform) is cached by uv after the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ -x "$HOME/.local/bin/uv" ]; then UV="$HOME/.local/bin/uv"; else
    echo "==> installing uv (the Python package manager Cairn uses) with pip"
    python3 -m pip install --user --quiet uv
    UV="$HOME/.local/bin/uv"
  fi
fi

if "$UV" sync --frozen --all-packages --all-extras --dry-run 2>&1 | grep -q "Would build llama-cpp-python\|Building llama-cpp-python\|llama-cpp-python" \
   && ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "==> installing llama-cpp-python. It has no binary wheel for this platform, so the first setup on a"
  echo "    machine compiles llama.cpp from source (about 9 minutes on 2 cores); uv caches that build and"
  echo "    every later setup, fresh clones included, reuses it in seconds."
  ( start=$SECONDS; while sleep 30; do echo "    ... still compiling llama.cpp ($((SECONDS - start)) s)"; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
fi
"$UV" sync --frozen --all-packages --all-extras --quiet
