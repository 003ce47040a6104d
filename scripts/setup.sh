#!/usr/bin/env bash
# Create or refresh .venv: everything from uv.lock, then llama-cpp-python from a per-machine wheel.
# Safe to re-run; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
WHEELHOUSE=${CAIRN_WHEELHOUSE:-$HOME/.cache/cairn/wheels}

UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ -x "$HOME/.local/bin/uv" ]; then UV="$HOME/.local/bin/uv"; else
    echo "==> installing uv (the Python package manager Cairn uses) with pip"
    python3 -m pip install --user --quiet uv
    UV="$HOME/.local/bin/uv"
  fi
fi

# --inexact: keep llama-cpp-python, which is installed below rather than from the lock.
"$UV" sync --frozen --all-packages --all-extras --inexact --quiet

if .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
  exit 0
fi
mkdir -p "$WHEELHOUSE"
if ! ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $LLAMA_VERSION. It has no binary wheel for this platform, so llama.cpp is"
  echo "    compiled from source once per machine (about 9 minutes on 2 cores). The wheel is kept in"
  echo "    $WHEELHOUSE, so every later setup, fresh clones included, installs it in seconds."
  ( start=$SECONDS; while sleep 30; do echo "    ... still compiling llama.cpp ($((SECONDS - start)) s)"; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  build_dir=$(mktemp -d)
  if ! python3 -m pip wheel --quiet --no-deps --no-binary llama-cpp-python -w "$build_dir" \
        "llama-cpp-python==$LLAMA_VERSION" >"$build_dir/build.log" 2>&1; then
    echo "!! building llama-cpp-python failed; the last lines of the build log:"; tail -n 40 "$build_dir/build.log"
    exit 1
  fi
  mv "$build_dir"/llama_cpp_python-*.whl "$WHEELHOUSE"/
  kill $ticker 2>/dev/null || true
  echo "==> llama-cpp-python built in $((SECONDS)) s"
fi
"$UV" pip install --quiet --python .venv/bin/python --no-deps --no-index --find-links "$WHEELHOUSE" \
  "llama-cpp-python==$LLAMA_VERSION"
