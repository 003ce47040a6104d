"""Accessibility checks for the browser tests: axe-core (from npm) run in the page under test.

`axe_violations(page)` loads axe-core from a file on disk into a Playwright page, so nothing is fetched from a
CDN. It is evaluated through Playwright (the DevTools protocol), which the page's CSP does not govern:
`page.add_script_tag(path=...)` would insert an inline <script>, and Cairn's pages forbid inline script
(script-src 'self'), so it fails on every one of them ("Executing inline script violates ... CSP"). The
page keeps its CSP, so the check sees the page as users do. axe-core is installed once with npm into a cache
directory outside the repository (`CAIRN_AXE_DIR`, default ~/.cache/cairn/axe-core-<version>) and reused.

Usage, after the page has drawn what is to be checked:

    from .axe import assert_no_serious_violations
    assert_no_serious_violations(page)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

AXE_VERSION = "4.14.1"
SERIOUS = ("serious", "critical")


def axe_dir() -> Path:
    default = Path.home() / ".cache" / "cairn" / f"axe-core-{AXE_VERSION}"
    return Path(os.environ.get("CAIRN_AXE_DIR", default))


def ensure_axe() -> Path:
    """The path of axe.min.js, installed with npm when missing (the npm registry must be reachable once)."""
    script = axe_dir() / "node_modules" / "axe-core" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is missing; install it (apt-get install -y npm) to run the accessibility checks"
        )
    axe_dir().mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(axe_dir()), "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not script.exists():
        raise RuntimeError(f"npm could not install axe-core@{AXE_VERSION}:\n{done.stderr[-2000:]}")
    return script


def axe_violations(page: Page, impacts: tuple[str, ...] = SERIOUS) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA rules and best practices), those
    with one of `impacts`."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(ensure_axe().read_text(encoding="utf-8"))
    result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation and the first few elements it names, for an assertion message."""
    lines = []
    for v in violations:
        targets = [", ".join(n["target"]) for n in v["nodes"][:3]]
        lines.append(f"{v['impact']}: {v['id']} ({v['help']}) at {targets}")
    return "\n".join(lines)


def assert_no_serious_violations(page: Page) -> None:
    violations = axe_violations(page)
    assert not violations, "axe-core found:\n" + describe(violations)
