#!/usr/bin/env bash
# Create or refresh .venv: everything from uv.lock, then llama-cpp-python from a per-machine wheel.
# Safe to re-run; a second run takes seconds.
#
#   scripts/setup.sh               wait for llama-cpp-python (make setup, make test: the real model is needed)
#   scripts/setup.sh --background  start its build in the background and return (make up: the stack serves
#                                  answers quoted from the sources meanwhile, and the gateway loads the model
#                                  by itself when the build is done)
#   CAIRN_LLAMA_CUDA=1             build llama.cpp with CUDA (docs/models.md, GPU)
#   CAIRN_LLAMA_AMX=auto|on|off    llama.cpp's AMX kernels (docs/models.md, "CPUs that advertise AMX"): auto
#                                  builds without them on a CPU that advertises AMX, whose kernels fault in
#                                  many VMs; on bare-metal Xeons `on` brings them back
#
# llama-cpp-python has no binary wheel for this platform, so llama.cpp is compiled once per machine (about
# 9 minutes on 2 cores); the wheel is kept in the wheelhouse, so every later setup, fresh clones included,
# installs it in seconds. Progress: .run/llama-build.json (read by the gateway's /readyz and the page's banner)
# and .run/llama-build.log.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
MODE=wait
[ "${1:-}" = "--background" ] && MODE=background
CUDA=${CAIRN_LLAMA_CUDA:-0}
AMX=${CAIRN_LLAMA_AMX:-auto}
if [ "$AMX" = auto ]; then
  if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then AMX=off; else AMX=on; fi
fi
# Builds of one version differ by their flags but share a wheel name: each flavour has its own wheelhouse, and
# .venv records the flavour installed, so changing a flag builds (or installs) the matching wheel.
FLAVOR=cpu
[ "$AMX" = off ] && FLAVOR=cpu-noamx
[ "$CUDA" = 1 ] && FLAVOR=cuda
WHEELHOUSE=${CAIRN_WHEELHOUSE:-$HOME/.cache/cairn/wheels}
[ "$FLAVOR" != cpu ] && WHEELHOUSE=$WHEELHOUSE/$FLAVOR
FLAVOR_FILE=.venv/.cairn-llama-flavor
RUN=.run
STATUS=$RUN/llama-build.json
LOG=$RUN/llama-build.log
PIDFILE=$RUN/llama-build.pid
EXPECTED_S=540
mkdir -p "$RUN"

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

installed() {  # the right version and flavour, and GPU offload exactly when CUDA was asked for
  [ "$(cat "$FLAVOR_FILE" 2>/dev/null || echo cpu)" = "$FLAVOR" ] || return 1
  .venv/bin/python - "$LLAMA_VERSION" "$CUDA" <<'EOF' 2>/dev/null
import sys
import llama_cpp
ok = llama_cpp.__version__ == sys.argv[1] and bool(llama_cpp.llama_supports_gpu_offload()) == (sys.argv[2] == "1")
sys.exit(0 if ok else 1)
EOF
}

status() {  # state [started_at]
  local now; now=$(date +%s)
  printf '{"state": "%s", "started_at": %s, "finished_at": %s, "expected_s": %s, "log": "%s"}\n' \
    "$1" "${2:-$now}" "$([ "$1" = building ] && echo null || echo "$now")" "$EXPECTED_S" "$LOG" >"$STATUS.tmp"
  mv "$STATUS.tmp" "$STATUS"  # one rename: a reader never sees half a file
}

have_wheel() { ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; }

install_wheel() {
  "$UV" pip install --quiet --reinstall-package llama-cpp-python --python .venv/bin/python --no-deps \
    --no-index --find-links "$WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION" && echo "$FLAVOR" >"$FLAVOR_FILE"
}

build() {  # compile the wheel into the wheelhouse and install it; the status file says how it went
  local started; started=$(date +%s)
  status building "$started"
  mkdir -p "$WHEELHOUSE"
  local build_dir; build_dir=$(mktemp -d)
  # --no-cache-dir: pip keeps built wheels by source URL, not by flags; a cached build of another flavour
  # would be taken for this one.
  local args=(--no-deps --no-cache-dir --no-binary llama-cpp-python -w "$build_dir")
  if [ "$CUDA" = 1 ]; then
    # Measured on an H100 (16 cores): 308 s. No build isolation, so the build sees this machine's CUDA.
    python3 -m pip install --quiet --user scikit-build-core cmake ninja
    export CMAKE_ARGS="-DGGML_CUDA=on ${CMAKE_ARGS:-}"
    args+=(--no-build-isolation)
  fi
  if [ "$AMX" = off ]; then
    # -march=native turns AMX on wherever the CPU flags say so, and ggml then puts the weights in its AMX
    # buffer type; in VMs whose hypervisor does not let the tile instructions run, the first answer dies in
    # ggml_backend_amx_mul_mat. GCC's explicit -mno-* win over -march=native's, whatever their order.
    # (CMake takes CFLAGS/CXXFLAGS as the initial CMAKE_C_FLAGS/CMAKE_CXX_FLAGS.)
    local noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CFLAGS="$noamx ${CFLAGS:-}" CXXFLAGS="$noamx ${CXXFLAGS:-}"
  fi
  if python3 -m pip wheel --quiet "${args[@]}" "llama-cpp-python==$LLAMA_VERSION" >"$LOG" 2>&1 \
      && mv "$build_dir"/llama_cpp_python-*.whl "$WHEELHOUSE"/ && install_wheel >>"$LOG" 2>&1; then
    status done "$started"
    echo "==> llama-cpp-python built and installed in $(( $(date +%s) - started )) s"
  else
    status failed "$started"
    echo "!! building llama-cpp-python failed; the last lines of $LOG:"; tail -n 40 "$LOG"
    return 1
  fi
}

building() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if installed; then exit 0; fi
if have_wheel && ! building; then install_wheel; status done; exit 0; fi

if ! building; then
  if [ "$MODE" = background ]; then
    echo "==> llama.cpp is compiled once per machine (about 9 minutes on 2 cores); that runs in the"
    echo "    background now. Until it is done, the stack answers with quotes from your documents; the"
    echo "    model loads by itself afterwards. Progress: make status, or the banner on the page."
    export -f build status install_wheel
    export LLAMA_VERSION CUDA AMX FLAVOR FLAVOR_FILE WHEELHOUSE STATUS LOG EXPECTED_S UV
    nohup bash -c build >>"$RUN/llama-build.out" 2>&1 &
    echo $! >"$PIDFILE"
    exit 0
  fi
  echo "==> building llama-cpp-python $LLAMA_VERSION (about 9 minutes on 2 cores, once per machine; the"
  echo "    wheel is kept in $WHEELHOUSE, so every later setup installs it in seconds)"
  ( start=$SECONDS; while sleep 30; do echo "    ... still compiling llama.cpp ($((SECONDS - start)) s)"; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  echo $$ >"$PIDFILE"
  build
  exit $?
fi

[ "$MODE" = background ] && { echo "==> llama.cpp is still compiling in the background (see make status)"; exit 0; }
echo "==> waiting for the background build of llama.cpp to finish (progress: $LOG)"
while building; do sleep 5; done
installed || { echo "!! the background build did not install llama-cpp-python; see $LOG"; exit 1; }
