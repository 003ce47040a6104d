"""Policy, audit records, collection permissions, API keys and logins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PolicyRule(BaseModel):
    name: str
    kind: str
    action: Literal["pass", "warn", "reject"]


class PolicyState(BaseModel):
    source: str
    rules: list[PolicyRule]
    reloaded: bool | None = None


class AuditRecord(BaseModel):
    """One answer as it was recorded (extra fields may follow in later versions)."""

    model_config = ConfigDict(extra="allow")

    id: int
    hash: str
    at: str
    kind: Literal["answer"]
    request_id: str | None
    trace_id: str | None = None
    key_id: str | None = None
    collection: str | None = None
    question: str | None = None
    retrieved: list[str] = []
    cited: list[str] = []
    answer: str | None = None
    withheld: str | None = None
    model: str | None = None
    provider: str | None = None
    outcome: Literal["ok", "fallback", "warn"]
    reason_code: str | None = None
    rule: str | None = None
    rules: list[dict[str, str]] = []
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class AuditEvent(BaseModel):
    """A login, a permission change or an API key change (`?kind=`; http/identity.py), as it was recorded."""

    model_config = ConfigDict(extra="allow")

    id: int
    hash: str
    at: str
    kind: Literal["login", "permissions", "key", "retention"]
    outcome: str
    request_id: str | None = None
    by: dict[str, Any] | None = None


class AuditPage(BaseModel):
    records: list[AuditRecord | AuditEvent]
    next_after_id: int | None


class AuditVerdict(BaseModel):
    ok: bool
    records: int
    head: str
    anchor: str
    first_bad_id: int | None
    problem: str | None


# --- users, groups and permissions (governance/access.py, http/identity.py) -------------------------------

# `user:<id>`, `group:<name>` or `*` (everyone who signed in).
_PRINCIPAL = r"^(\*|(user|group):[^\s,]{1,200})$"
Principal = Annotated[str, Field(pattern=_PRINCIPAL)]


class PermissionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: Principal | None = None
    writers: list[Principal] = Field(default_factory=list, max_length=500)
    readers: list[Principal] = Field(default_factory=list, max_length=500)


class PermissionsOut(BaseModel):
    collection: str
    owner: str | None
    writers: list[str]
    readers: list[str]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200, pattern=r"^[^\s,]+$")
    name: str = Field("", max_length=200)
    groups: list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s,]+$")]] = Field(
        default_factory=list, max_length=200
    )
    admin: bool = False


class ApiKeyOut(BaseModel):
    id: str
    user: str
    name: str
    groups: list[str]
    admin: bool
    created_at: str
    created_by: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself, shown this once; only its hash is stored")


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class ApiKeyResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex")


class ResolvedIdentity(BaseModel):
    user: str
    name: str
    groups: list[str]
    admin: bool


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=200)
    groups: list[str] = Field(default_factory=list, max_length=200)
    admin: bool = False
    via: Literal["oidc", "proxy", "key"] = "oidc"


class Recorded(BaseModel):
    recorded: bool
