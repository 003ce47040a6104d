"""Who is asking, and which collections they may read and write (docs/operations.md, "Users, groups and
permissions").

The BFF names the caller on every request it forwards (cairn_core USER_HEADER, GROUPS_HEADER, ROLE_HEADER);
QS believes those headers for the same reason it believes OWNER_HEADER: once CAIRN_INTERNAL_TOKEN is set,
only the BFF can reach it. A request without USER_HEADER is the operator's (a tool at QS itself), and an
admin's reads are not filtered either; everyone else reads only the collections their user, one of their
groups or `*` has a role on. `access_of` works that list out once per request and keeps it on the request;
handlers pass `Access.collections` to the store, which applies it inside its queries (store/base.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cairn_core import GROUPS_HEADER, ROLE_HEADER, USER_HEADER, BadRequest, CairnError, ReasonCode
from starlette.requests import Request

from cairn_query.store import Store
from cairn_query.store.permissions import EVERYONE

_MAX_GROUPS = 200


@dataclass(frozen=True)
class Access:
    user: str | None  # None: the operator
    groups: tuple[str, ...] = ()
    admin: bool = False
    # What this caller may read; None: everything (the operator, an admin).
    collections: list[str] | None = None

    @classmethod
    def nobody(cls) -> Access:
        """Reads nothing: the default where no caller was named."""
        return cls("", collections=[])

    @property
    def unrestricted(self) -> bool:
        return self.user is None or self.admin

    @property
    def principals(self) -> list[str]:
        """How permission rows name this caller: their user, each of their groups, and everyone."""
        if not self.user:
            return []
        return [f"user:{self.user}", *(f"group:{g}" for g in self.groups), EVERYONE]

    @property
    def scope_key(self) -> str:
        """What the answer cache keys on: two callers share an answer only if they read the same collections."""
        return "*" if self.collections is None else "\n".join(self.collections)

    def audit(self) -> dict[str, object]:
        return {"user": self.user, "groups": list(self.groups), "admin": self.admin}


def _identity(request: Request) -> Access:
    user = request.headers.get(USER_HEADER, "").strip()
    if not user:
        return Access(None)
    if len(user) > 200:
        raise BadRequest(f"{USER_HEADER} must be at most 200 characters.")
    raw = request.headers.get(GROUPS_HEADER, "")
    groups = tuple(sorted({g.strip() for g in raw.split(",") if g.strip()}))
    if len(groups) > _MAX_GROUPS or any(len(g) > 200 for g in groups):
        raise BadRequest(f"{GROUPS_HEADER}: at most {_MAX_GROUPS} groups of at most 200 characters.")
    admin = request.headers.get(ROLE_HEADER, "").strip().lower() == "admin"
    return Access(user, groups, admin)


async def access_of(request: Request, store: Store) -> Access:
    """The caller and what they may read, computed once per request (the first call reads the store)."""
    found = getattr(request.state, "access", None)
    if isinstance(found, Access):
        return found
    who = _identity(request)
    if not who.unrestricted:
        readable = await asyncio.to_thread(store.permissions.readable, who.principals)
        who = Access(who.user, who.groups, who.admin, readable)
    request.state.access = who
    return who


def forbidden(message: str) -> CairnError:
    return CairnError(ReasonCode.POLICY_REJECTED, message)


def require_admin(access: Access) -> None:
    if not access.unrestricted:
        raise forbidden("Only an admin may do this.")


async def require_writer(access: Access, store: Store, collection: str) -> bool:
    """Raise unless `access` may write `collection`; True when this write creates the collection, which then
    becomes the caller's (its first writer owns it, so a user can start a collection of their own)."""
    if access.unrestricted:
        return False
    roles = await asyncio.to_thread(store.permissions.roles_of, access.principals, collection)
    if roles & {"owner", "writer"}:
        return False
    stats = await asyncio.to_thread(store.stats, [collection])
    if stats["documents"] == 0 and await asyncio.to_thread(
        store.permissions.claim, collection, f"user:{access.user}"
    ):
        return True
    raise forbidden(f"You may not write to the collection {collection!r}; ask its owner or an admin.")


async def require_manager(access: Access, store: Store, collection: str) -> None:
    """Permissions of a collection are managed by admins and by its owner."""
    if access.unrestricted:
        return
    roles = await asyncio.to_thread(store.permissions.roles_of, access.principals, collection)
    if "owner" not in roles:
        raise forbidden(f"Only an admin or the owner of {collection!r} may change who may use it.")
