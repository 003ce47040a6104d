# BFF and web page image. uv two-step build: dependencies first (cached until uv.lock changes), then the code.
# Build from the repository root: docker build -f compose/bff.Dockerfile .
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.5 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/cairn-core/pyproject.toml libs/cairn-core/
COPY libs/cairn-testing/pyproject.toml libs/cairn-testing/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/query/pyproject.toml services/query/
COPY services/bff/pyproject.toml services/bff/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package cairn-bff
COPY libs/cairn-core libs/cairn-core
COPY services/bff services/bff
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package cairn-bff

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 cairn
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH BFF_HOST=0.0.0.0 BFF_PORT=8080
USER cairn
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
CMD ["python", "-m", "cairn_bff"]
