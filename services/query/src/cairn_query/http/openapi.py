"""The query service's `/openapi.json`, from the operations declared beside each route (http/*.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cairn_core import CONTRACT_VERSION, Operation, openapi_document


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    return openapi_document(
        "Cairn query service",
        CONTRACT_VERSION,
        operations,
        guarded_errors=(401,),  # the internal token (cairn_core _auth), when it is set
        security_schemes={"adminBearer": {"type": "http", "scheme": "bearer"}},
    )
