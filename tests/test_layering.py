"""The layering contracts of pyproject.toml ([tool.importlinter]) hold: `lint-imports` as `make lint` runs it.

QS's folders are layers (http → wiring → chat, conversations, governance, corpus → store; the gateway client
knows none of them), cairn-core imports no service, and the services never import each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_layering_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_a_store_that_imports_the_domain_breaks_the_contract(tmp_path: Path) -> None:
    # The contract can fail: a copy of the config with the store on top is broken by today's code.
    config = (ROOT / "pyproject.toml").read_text()
    upside_down = config.replace('    "cairn_query.store",\n]', "]").replace(
        '    "cairn_query.http",\n', '    "cairn_query.store",\n    "cairn_query.http",\n'
    )
    assert upside_down != config
    (tmp_path / "pyproject.toml").write_text(upside_down)
    result = lint_imports("--config", str(tmp_path / "pyproject.toml"))
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout[-2000:]
