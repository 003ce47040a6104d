"""Cross-service fixtures: the three real services (gateway with the toy provider, QS, BFF) as processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cairn_testing import ServerProcess, start_gateway, start_server


@dataclass
class Stack:
    gateway: ServerProcess
    query: ServerProcess
    bff: ServerProcess

    @property
    def all(self) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
        return (self.gateway, self.query, self.bff)

    def stop(self) -> None:
        for server in reversed(self.all):
            server.stop()


# Every end-to-end stack runs as `make up` runs it: QS and the gateway require the internal token.
INTERNAL_TOKEN = "e2e-internal-token"


def start_stack(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    toy_delay_ms: int = 0,
    gateway_env: dict[str, str] | None = None,
) -> Stack:
    """Gateway (toy provider and embedder unless `gateway_env` says otherwise), QS on a fresh SQLite file, BFF
    in front: real processes."""
    env = {"CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN, **(env or {})}
    gateway_env = gateway_env or {}
    toy_embedder = {**env, **gateway_env}.get("LLM_EMBED_PROVIDER", "toy") == "toy"
    gateway = start_gateway(
        # A gateway whose model is down is alive but not ready; the stack must still start to show fallbacks.
        health_path="/healthz" if gateway_env else "/readyz",
        **{"LLM_TOY_DELAY_MS": str(toy_delay_ms), **env, **gateway_env},
    )
    started = [gateway]
    try:
        query = start_server(
            "query",
            ["cairn_query"],
            env={
                "QS_PORT": "{port}",
                "QS_GATEWAY_URL": gateway.url,
                "QS_DB_PATH": str(data_dir / "qs.sqlite3"),
                # Calibrated on MiniLM's cosines, not on the toy embedder's hashed words: gate off behind it.
                **({"QS_MIN_EVIDENCE": "-1", "QS_ANSWER_EVIDENCE": "-1"} if toy_embedder else {}),
                **env,
            },
            health_path="/healthz",
        )
        started.append(query)
        bff = start_server(
            "bff",
            ["cairn_bff"],
            env={"BFF_PORT": "{port}", "BFF_QS_URL": query.url, "BFF_GATEWAY_URL": gateway.url, **env},
            health_path="/readyz",
        )
    except Exception:
        for server in reversed(started):
            server.stop()
        raise
    return Stack(gateway, query, bff)
