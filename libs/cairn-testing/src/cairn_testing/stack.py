"""Cairn's own processes as tests and benchmarks start them: the fake OpenAI-compatible server and gateways.

A test gateway's environment is fixed here rather than inherited: every LLM_* that decides what a test sees
is set (the provider, its model and upstream, the embedder, the fallback chain), so an operator's `.env`,
which the Makefile exports, cannot change a test; `env` says what the test changes.
"""

from __future__ import annotations

from .processes import ServerProcess, start_server


def start_fake_openai(name: str = "fake-openai", *flags: str) -> ServerProcess:
    """`cairn_testing.fake_openai` on a free port; `flags` are its own (`--fail-all 503`, `--delay-ms 50`)."""
    return start_server(
        name, ["cairn_testing.fake_openai", "--port", "{port}", *flags], health_path="/healthz"
    )


def gateway_env(
    upstream: ServerProcess | None = None, *, provider: str | None = None, **env: str
) -> dict[str, str]:
    """The environment of a test gateway on the port `start_server` picks: the toy model, or `openai_compat`
    against `upstream` (a fake OpenAI server) as model `fake-model`, or `provider` with its default model; the
    toy embedder; no fallback chain unless the test asks for one (the model's own failures are what it sees)."""
    base = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": provider or ("openai_compat" if upstream else "toy"),
        "LLM_BASE_URL": f"{upstream.url}/v1" if upstream else "",
        "LLM_MODEL": "fake-model" if upstream else "",
        "LLM_EMBED_PROVIDER": "toy",
        "LLM_FALLBACK_PROVIDERS": "",
    }
    return {**base, **env}


def start_gateway(
    upstream: ServerProcess | None = None,
    *,
    name: str = "gateway",
    provider: str | None = None,
    health_path: str = "/readyz",
    timeout_s: float = 60.0,
    **env: str,
) -> ServerProcess:
    """A real gateway process with `gateway_env(upstream, provider=provider, **env)`. `health_path="/healthz"`
    for one that is meant to start degraded (its model cannot load: alive, but not ready)."""
    return start_server(
        name,
        ["cairn_gateway"],
        env=gateway_env(upstream, provider=provider, **env),
        health_path=health_path,
        timeout_s=timeout_s,
    )
