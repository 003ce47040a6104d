"""What the BFF itself checks of a request before forwarding it; QS validates the rest and answers 4xx."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ChatProxyRequest(BaseModel):
    """Only `stream` decides how the BFF proxies; every other field travels to QS byte for byte."""

    model_config = ConfigDict(extra="allow")

    stream: bool = False
