# LLM gateway image. uv two-step build: dependencies first (cached until uv.lock changes), then the code.
# Build from the repository root: docker build -f compose/gateway.Dockerfile .
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.5 /uv /uvx /bin/
# llama-cpp-python has no binary wheel for this platform: it compiles llama.cpp (several minutes, once).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake && rm -rf /var/lib/apt/lists/*
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Step 1: only the workspace manifests and the lock, so this layer survives code changes.
COPY pyproject.toml uv.lock ./
COPY libs/cairn-core/pyproject.toml libs/cairn-core/
COPY libs/cairn-testing/pyproject.toml libs/cairn-testing/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/query/pyproject.toml services/query/
COPY services/bff/pyproject.toml services/bff/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package cairn-gateway --extra llamacpp --extra onnx \
 && uv pip install --python /app/.venv/bin/python --no-deps "llama-cpp-python==0.3.36"
# Step 2: the code of the members this service uses.
COPY libs/cairn-core libs/cairn-core
COPY services/gateway services/gateway
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --inexact --package cairn-gateway --extra llamacpp --extra onnx

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 cairn
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH LLM_HOST=0.0.0.0 LLM_PORT=8082
USER cairn
EXPOSE 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8082/healthz', timeout=2)" || exit 1
CMD ["python", "-m", "cairn_gateway"]
