# Query service image. uv two-step build: dependencies first (cached until uv.lock changes), then the code.
# Build from the repository root: docker build -f compose/query.Dockerfile .
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
    uv sync --frozen --no-dev --no-install-workspace --package cairn-query
COPY libs/cairn-core libs/cairn-core
COPY services/query services/query
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package cairn-query

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 cairn && mkdir -p /data && chown cairn /data
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH QS_HOST=0.0.0.0 QS_PORT=8081 QS_DB_PATH=/data/cairn-qs.sqlite3
USER cairn
VOLUME /data
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2)" || exit 1
CMD ["python", "-m", "cairn_query"]
