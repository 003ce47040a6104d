"""Without an exporter the tracer records nothing, yet trace ids must still continue across hops."""

from __future__ import annotations

from cairn_core import outgoing_headers, trace_id_hex
from cairn_core.observability import ContextOnlyTracerProvider, setup_tracing
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


def _traceparent(trace_id: str, span_id: str = "b7ad6b7169203331", flags: str = "01") -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{span_id}-{flags}"}


def test_no_endpoint_gives_context_only_and_endpoint_gives_sdk(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert isinstance(setup_tracing("t"), ContextOnlyTracerProvider)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = setup_tracing("t")
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_continues_the_callers_trace_with_a_new_span_id() -> None:
    tracer = ContextOnlyTracerProvider().get_tracer("t")
    ctx = propagate.extract(_traceparent(PARENT_TRACE))
    with tracer.start_as_current_span("server", context=ctx) as span:
        assert trace_id_hex(span) == PARENT_TRACE
        assert not span.is_recording()
        sent = outgoing_headers()["traceparent"].split("-")
    assert sent[1] == PARENT_TRACE
    assert sent[2] != "b7ad6b7169203331" and sent[2] != "0" * 16
    assert sent[3] == "01"


def test_keeps_the_callers_not_sampled_decision() -> None:
    tracer = ContextOnlyTracerProvider().get_tracer("t")
    ctx = propagate.extract(_traceparent(PARENT_TRACE, flags="00"))
    with tracer.start_as_current_span("server", context=ctx):
        assert outgoing_headers()["traceparent"].endswith("-00")


def test_a_root_span_starts_a_sampled_trace_and_children_share_it() -> None:
    tracer = ContextOnlyTracerProvider().get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        root_id = trace_id_hex(root)
        assert root_id != "0" * 32
        with tracer.start_as_current_span("child") as child:
            assert trace_id_hex(child) == root_id
            assert child.get_span_context().span_id != root.get_span_context().span_id
            assert outgoing_headers()["traceparent"].endswith("-01")
    other = tracer.start_span("another root")
    assert trace_id_hex(other) != root_id
