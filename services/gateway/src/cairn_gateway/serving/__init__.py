"""How the gateway answers, one module per API (as vLLM's `serving_*`): `generate.py` (the contract),
`openai.py` (the OpenAI-compatible API), `embeddings.py`, `admin.py` (models, readiness, admin, keys); `base.py`
runs a generation request through the engine and records how it ended."""
