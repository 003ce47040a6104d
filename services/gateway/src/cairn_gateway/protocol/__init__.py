"""The gateway's wire models, one module per API: `openai.py`, `embeddings.py`, `admin.py` (models, readiness,
admin actions, virtual keys). The `/v1/generate` contract is shared with its callers: cairn_core.contract."""
