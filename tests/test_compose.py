"""compose/ checked statically (Docker does not run here): services, ports, Dockerfiles, env names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cairn_bff.settings import BffSettings
from cairn_gateway.settings import GatewaySettings
from cairn_query.settings import QuerySettings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
SERVICES: dict[str, tuple[str, type[BaseSettings], str]] = {
    # compose service: (env prefix, settings class, python module)
    "gateway": ("LLM_", GatewaySettings, "cairn_gateway"),
    "query": ("QS_", QuerySettings, "cairn_query"),
    "bff": ("BFF_", BffSettings, "cairn_bff"),
}
PREFIX_TO_SETTINGS = {prefix: cls for prefix, cls, _ in SERVICES.values()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def documented_env() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}


def _default_port(name: str) -> int:
    _, cls, _ = SERVICES[name]
    return int(cls.model_fields["port"].default)


def test_the_three_services_and_the_model_server_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(SERVICES) <= set(services)
    for name in SERVICES:
        assert "profiles" not in services[name], f"{name} must start without a profile"
    assert services["ollama"]["profiles"] == ["ollama"]
    assert services["vllm"]["profiles"] == ["vllm"]


@pytest.mark.parametrize("name", list(SERVICES))
def test_ports_match_the_settings_defaults(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    port = _default_port(name)
    prefix = SERVICES[name][0]
    assert _env(service)[f"{prefix}PORT"] == str(port)
    assert _env(service)[f"{prefix}HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


def test_services_point_at_each_other_by_name_and_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bff, query = _env(services["bff"]), _env(services["query"])
    assert bff["BFF_QS_URL"] == f"http://query:{_default_port('query')}"
    assert bff["BFF_GATEWAY_URL"] == f"http://gateway:{_default_port('gateway')}"
    assert query["QS_GATEWAY_URL"] == f"http://gateway:{_default_port('gateway')}"
    assert services["bff"]["depends_on"]["query"]["condition"] == "service_healthy"
    assert services["query"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_every_env_name_is_a_real_setting_documented_in_env_example(compose: dict[str, Any]) -> None:
    documented = documented_env()
    names: set[str] = set()
    for service in compose["services"].values():
        names |= set(_env(service))
    # ${NAME:-default} interpolations are env names too.
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    cairn_names = {n for n in names if n.startswith(tuple(PREFIX_TO_SETTINGS))}
    assert cairn_names, "no LLM_/QS_/BFF_ settings found in compose"
    for name in sorted(cairn_names):
        prefix = next(p for p in PREFIX_TO_SETTINGS if name.startswith(p))
        field = name[len(prefix) :].lower()
        assert field in PREFIX_TO_SETTINGS[prefix].model_fields, f"{name} is not a setting of its service"
        assert name in documented, f"{name} is used in compose but not documented in .env.example"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in names and "OTEL_EXPORTER_OTLP_ENDPOINT" in documented


@pytest.mark.parametrize("name", list(SERVICES))
def test_dockerfiles_are_uv_two_step_builds(compose: dict[str, Any], name: str) -> None:
    build = compose["services"][name]["build"]
    assert build["context"] == ".."
    dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
    text = dockerfile.read_text()
    _, _, module = SERVICES[name]
    package = module.replace("_", "-")
    syncs = [line for line in text.splitlines() if "uv sync" in line]
    assert len(syncs) == 2, "one sync for dependencies, one for the code"
    assert "--no-install-workspace" in syncs[0] and "--frozen" in syncs[0]
    assert all(f"--package {package}" in s for s in syncs)
    # The lock and manifests are copied before any source, so the dependency layer is cached.
    first_source_copy = text.index("COPY libs/cairn-core libs/cairn-core")
    assert (
        text.index("COPY pyproject.toml uv.lock") < text.index("--no-install-workspace") < first_source_copy
    )
    for manifest in re.findall(r"^COPY (\S+/pyproject\.toml) ", text, flags=re.M):
        assert (ROOT / manifest).is_file(), manifest
    members = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*/pyproject.toml")}
    copied = set(re.findall(r"^COPY (\S+)/pyproject\.toml ", text, flags=re.M))
    assert members <= copied, f"uv needs every workspace member's manifest: missing {members - copied}"
    assert f'CMD ["python", "-m", "{module}"]' in text
    assert f"EXPOSE {_default_port(name)}" in text


def test_every_service_restarts_when_it_exits_unexpectedly(compose: dict[str, Any]) -> None:
    # What scripts/supervise.py does for `make up`: a crashed container comes back (Docker backs off itself).
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
