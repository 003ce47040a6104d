"""Small settings models that every service composes into its own pydantic-settings class."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class CommonSettings(BaseModel):
    """Fields every service has; each service adds them under its own env prefix (BFF_, QS_, LLM_)."""

    host: str = "127.0.0.1"
    log_level: str = "INFO"
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
