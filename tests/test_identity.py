"""Users, groups and collection permissions end to end: a real OIDC provider process, the three real services,
logins through the BFF, a trusted proxy's header, managed API keys, and a leak test over every endpoint of the
BFF's and QS's OpenAPI documents (docs/operations.md, "Users, groups and permissions").

The corpus: `hr` holds a document with a marker no one outside group `hr` may ever see; `eng` holds one for
group `eng`. Both answer the same question.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess, start_oidc_provider

from .conftest import INTERNAL_TOKEN, Stack, start_stack

ADMIN_TOKEN = "identity-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "HRSECRET4417"  # in the hr document only
QUESTION = "What does the bonus policy pay?"
DOCS = [
    {
        "id": "hr-bonus",
        "collection": "hr",
        "title": "HR bonus policy",
        "text": f"The bonus policy pays ten percent of salary every March. Reference {SECRET}.",
    },
    {
        "id": "eng-bonus",
        "collection": "eng",
        "title": "On-call bonus",
        "text": "The bonus policy for on-call engineers pays two hundred euros per week on call.",
    },
]
USERS = {
    "alice": {"name": "Alice", "groups": ["hr"]},
    "bob": {"name": "Bob", "groups": ["eng"]},
    "carol": {"name": "Carol", "groups": ["admins"]},
}
TRUSTED_PROXY = "127.0.0.2"  # tests send from it with httpx's local_address; 127.0.0.1 is not trusted


@pytest.fixture(scope="module")
def oidc() -> Iterator[ServerProcess]:
    provider = start_oidc_provider(USERS)
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def stack(oidc: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "CAIRN_ADMIN_TOKEN": ADMIN_TOKEN,
        "BFF_OIDC_ISSUER": oidc.url,
        "BFF_OIDC_CLIENT_ID": "cairn",
        "BFF_OIDC_CLIENT_SECRET": "oidc-test-secret",
        "BFF_SESSION_SECRET": "identity-session-secret",
        "BFF_ADMIN_GROUPS": "admins",
        "BFF_PROXY_AUTH": "true",
        "BFF_TRUSTED_PROXIES": TRUSTED_PROXY,
        "BFF_KEY_CACHE_S": "0",  # a revoked key is refused at once
        "BFF_RATE_LIMIT_PER_MINUTE": "0",
        "BFF_AUTH_FAILURES_PER_MINUTE": "0",  # the leak test is refused many times on purpose
        "BFF_MAX_INFLIGHT_PER_CLIENT": "0",
    }
    stack = start_stack(tmp_path_factory.mktemp("identity"), env)
    with httpx.Client(base_url=stack.bff.url, headers=ADMIN, timeout=30) as admin:
        for doc in DOCS:
            assert admin.post("/api/documents", json=doc).status_code in (200, 201)
        for name in ("hr", "eng"):
            perms = {"owner": "user:carol", "readers": [f"group:{name}"]}
            resp = admin.put(f"/api/collections/{name}/permissions", json=perms)
            assert resp.status_code == 200, resp.text
    yield stack
    stack.stop()


def login(bff_url: str, provider_url: str, user: str) -> httpx.Client:
    """A signed-in client: /auth/login → the provider's form → sign in → /auth/callback → the page. The
    callback's Set-Cookie is kept on the client as `login_cookie`."""
    client = httpx.Client(base_url=bff_url, follow_redirects=True, timeout=30)
    form = client.get("/auth/login")
    assert form.status_code == 200 and str(form.url).startswith(provider_url), form.url
    fields = {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.text)
    }
    assert fields["code_challenge_method"] == "S256" and fields["code_challenge"] and fields["nonce"]
    page = client.post(f"{provider_url}/authorize", data={**fields, "username": user})
    assert page.status_code == 200 and str(page.url).rstrip("/") == bff_url, page.url
    callback = next(r for r in page.history if r.url.path == "/auth/callback")
    client.headers["x-test-login-cookie"] = callback.headers["set-cookie"]
    return client


@pytest.fixture(scope="module")
def alice(stack: Stack, oidc: ServerProcess) -> Iterator[httpx.Client]:
    client = login(stack.bff.url, oidc.url, "alice")
    yield client
    client.close()


@pytest.fixture(scope="module")
def bob(stack: Stack, oidc: ServerProcess) -> Iterator[httpx.Client]:
    client = login(stack.bff.url, oidc.url, "bob")
    yield client
    client.close()


def collections_of(body: dict[str, Any]) -> set[str]:
    return {s["collection"] for s in body.get("sources", []) + body.get("results", [])}


def test_an_oidc_login_names_the_user_and_their_groups(stack: Stack, alice: httpx.Client) -> None:
    me = alice.get("/api/me").json()
    assert (me["user"], me["name"], me["groups"], me["via"], me["admin"]) == (
        "alice",
        "Alice",
        ["hr"],
        "oidc",
        False,
    )
    set_cookie = alice.headers["x-test-login-cookie"].lower()
    assert set_cookie.startswith("cairn_login=") and "httponly" in set_cookie and "samesite=lax" in set_cookie
    # Without the cookie the same client is nobody: local mode is off once a login is configured.
    assert httpx.get(f"{stack.bff.url}/api/me").status_code == 401


def test_a_forged_login_cookie_is_refused(stack: Stack) -> None:
    forged = {"cairn_login": "eyJsb2dpbiI6IHsidXNlciI6ICJjYXJvbCJ9fQ==.bad.sig"}
    assert httpx.get(f"{stack.bff.url}/api/me", cookies=forged).status_code == 401


def test_two_users_asking_the_same_question_get_answers_from_their_own_collections(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    for client, own, other in ((alice, "hr", "eng"), (bob, "eng", "hr")):
        body = client.post("/api/chat", json={"query": QUESTION}).json()
        assert body["sources"] and collections_of(body) == {own}, body
        assert all(c["chunk_id"].startswith(own) for c in body["citations"]), body
        hits = client.post("/api/search", json={"query": QUESTION}).json()
        assert collections_of(hits) == {own}
        docs = client.get("/api/documents").json()
        assert {d["collection"] for d in docs["documents"]} == {own} and docs["total"] == 1
        assert [c["name"] for c in client.get("/api/collections").json()["collections"]] == [own]
        assert client.get(f"/api/documents/{other}-bonus").status_code == 404


def test_a_cached_answer_is_never_served_to_another_permission_set(
    stack: Stack, alice: httpx.Client, bob: httpx.Client
) -> None:
    question = {"query": "How much is the March bonus of the policy?"}
    first = alice.post("/api/chat", json=question)
    again = alice.post("/api/chat", json=question)
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    other = bob.post("/api/chat", json=question)
    assert other.headers["x-cache"] == "miss" and SECRET not in other.text


def test_the_trusted_header_is_believed_only_from_a_trusted_proxy(stack: Stack) -> None:
    header = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "hr", "X-Forwarded-For": "198.51.100.7"}
    proxied = httpx.Client(transport=httpx.HTTPTransport(local_address=TRUSTED_PROXY), timeout=30)
    with proxied:
        me = proxied.get(f"{stack.bff.url}/api/me", headers=header)
        assert me.status_code == 200 and me.json()["user"] == "alice" and me.json()["via"] == "proxy"
        hits = proxied.post(f"{stack.bff.url}/api/search", json={"query": QUESTION}, headers=header)
        assert collections_of(hits.json()) == {"hr"}
    direct = httpx.get(f"{stack.bff.url}/api/me", headers=header, timeout=30)
    assert direct.status_code == 401 and direct.json()["reason_code"] == "UNAUTHORIZED"


def test_managed_api_keys_name_users_and_stop_working_when_revoked(stack: Stack, oidc: ServerProcess) -> None:
    carol = login(stack.bff.url, oidc.url, "carol")
    try:
        assert carol.get("/api/me").json()["operator"] is True
        made = carol.post("/api/admin/keys", json={"user": "dave", "groups": ["eng"]})
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        assert key.startswith("cairn_") and key not in carol.get("/api/admin/keys").text
        dave = {"Authorization": f"Bearer {key}"}
        hits = httpx.post(f"{stack.bff.url}/api/search", json={"query": QUESTION}, headers=dave, timeout=30)
        assert collections_of(hits.json()) == {"eng"}
        assert carol.delete(f"/api/admin/keys/{made.json()['id']}").status_code == 200
        assert httpx.get(f"{stack.bff.url}/api/me", headers=dave, timeout=30).status_code == 401
    finally:
        carol.close()


def test_permission_changes_and_logins_are_on_the_audit_chain(
    stack: Stack, alice: httpx.Client, bob: httpx.Client
) -> None:
    with httpx.Client(base_url=stack.bff.url, headers=ADMIN, timeout=30) as admin:
        records = admin.get("/api/admin/audit", params={"limit": 500, "kind": "all"}).json()["records"]
        kinds = {r["kind"] for r in records}
        assert {"login", "permissions", "answer"} <= kinds, kinds
        logins = {r["by"]["user"] for r in records if r["kind"] == "login"}
        assert {"alice", "bob"} <= logins
        change = next(r for r in records if r["kind"] == "permissions" and r["collection"] == "hr")
        assert change["after"]["readers"] == ["group:hr"]
        assert admin.get("/api/admin/audit/verify").json()["ok"] is True
    # A user who is not an admin reads none of it, at the BFF or at QS.
    assert alice.get("/api/admin/audit").status_code == 401


def test_a_user_cannot_change_who_may_read_a_collection_they_do_not_own(alice: httpx.Client) -> None:
    grab = alice.put("/api/collections/eng/permissions", json={"owner": "user:alice", "readers": ["*"]})
    assert grab.status_code == 403 and grab.json()["reason_code"] == "POLICY_REJECTED"
    # Writing into someone else's collection is refused; a new collection becomes the writer's own.
    doc = {"id": "alice-note", "collection": "eng", "text": "Alice's note about the bonus policy."}
    assert alice.post("/api/documents", json=doc).status_code == 403
    own = alice.post("/api/documents", json={**doc, "collection": "alice-notes"})
    assert own.status_code == 201, own.text
    assert alice.get("/api/collections/alice-notes/permissions").json()["owner"] == "user:alice"


# --- the leak test: every endpoint of both OpenAPI documents, tried as a user who may not read `hr` ----------

PATH_VALUES = {"doc_id": "hr-bonus", "chunk_id": "hr-bonus:0", "name": "hr"}
ASK = {"query": f"{SECRET}: what does the bonus policy pay?"}
SAY = {"content": ASK["query"]}  # a conversation's message
BODIES: dict[str, Any] = {
    "chat": ASK,
    "hybrid-query": ASK,
    "search": {"query": f"{SECRET} bonus policy"},
    "messages": SAY,
    "documents": {"id": "hr-bonus", "collection": "hr", "text": "Overwritten by someone who may not."},
    "batch": {"documents": [{"id": "hr-bonus", "collection": "hr", "text": "Overwritten by a batch job."}]},
    "conversations": {"title": "mine"},
    "conv_id": {"title": "taken"},
    "feedback": {"request_id": "x", "rating": "up"},
    "permissions": {"owner": "user:bob", "readers": ["*"]},
    "keys": {"user": "bob", "admin": True},
    "resolve": {"key_hash": "0" * 64},
    "logins": {"user": "bob", "groups": ["eng"]},
}
QUERIES = {"documents": {"q": "bonus", "collection": "hr"}, "audit": {"kind": "all", "q": SECRET}}


def _calls(doc: dict[str, Any], values: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of an OpenAPI document as (method, url path, request kwargs); a question is asked both
    as JSON and as a stream."""
    out = []
    for template, ops in doc["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        last = ([p for p in template.split("/") if p] or [""])[-1].strip("{}")
        for method in ops:
            kwargs: dict[str, Any] = {"params": QUERIES.get(last, {})}
            if method in ("post", "put", "patch") and last in BODIES:
                kwargs["json"] = BODIES[last]
            out.append((method.upper(), path, kwargs))
            if kwargs.get("json") in (ASK, SAY):
                out.append((method.upper(), path, {"json": {**kwargs["json"], "stream": True}}))
    # Signing out (and in) last: until then every call is the signed-in user's.
    return sorted(out, key=lambda call: call[1].startswith("/auth/"))


@pytest.fixture(scope="module")
def admin_state(stack: Stack) -> dict[str, str]:
    """An admin's conversation that quotes the secret, a cached answer, and a key: things to try to reach."""
    with httpx.Client(base_url=stack.bff.url, headers=ADMIN, timeout=30) as admin:
        conv = admin.post("/api/conversations", json={"title": "hr talk"}).json()["id"]
        said = admin.post(f"/api/conversations/{conv}/messages", json=SAY).json()
        assert SECRET in str(said["sources"]), said  # the admin can read it: the test can fail
        assert SECRET in admin.post("/api/chat", json=ASK).text
        key = admin.post("/api/admin/keys", json={"user": "erin"}).json()["id"]
    return {"conv_id": conv, "key_id": key, "job_id": _operators_job(stack)}


def _operators_job(stack: Stack) -> str:
    """A batch job of the operator's at QS whose status names the secret (a failed document's id): only its
    starter may read it."""
    too_big = {"id": f"{SECRET}-big", "collection": "hr", "text": "x" * 1_000_001}
    headers = {"X-Cairn-Internal-Token": INTERNAL_TOKEN}
    with httpx.Client(base_url=stack.query.url, headers=headers, timeout=60) as qs:
        job = qs.post("/v1/documents/batch", json={"documents": [too_big]}).json()
        for _ in range(200):
            status = qs.get(f"/v1/ingest/{job['id']}").json()
            if status["state"] != "running":
                break
            time.sleep(0.05)
    assert SECRET in str(status["failed"]), status  # the starter sees it: the test can fail
    return str(job["id"])


def _assert_no_leak(calls: list[tuple[str, str, dict[str, Any]]], send: Any) -> list[str]:
    tried = []
    for method, path, kwargs in calls:
        resp = send(method, path, **kwargs)
        assert SECRET not in resp.text, (method, path, resp.status_code, resp.text[:300])
        # A refusal for being too fast would hide a leak: every call must reach its handler.
        assert resp.status_code != 429 and resp.status_code < 500, (method, path, resp.text[:300])
        tried.append(f"{method} {path}")
        # Still signed in: a 401 outside the admin routes would mean nothing was really tried.
        refused = ("/admin/", "/api/connectors", "/auth/")  # the admin key's, or the login's own
        assert resp.status_code != 401 or any(r in path for r in refused), (method, path)
    return tried


def _hr_untouched(stack: Stack) -> None:
    with httpx.Client(base_url=stack.bff.url, headers=ADMIN, timeout=30) as admin:
        assert SECRET in admin.get("/api/documents/hr-bonus").text
        assert admin.get("/api/collections/hr/permissions").json()["readers"] == ["group:hr"]


def test_no_endpoint_of_the_bff_shows_a_collection_to_a_user_who_may_not_read_it(
    stack: Stack, bob: httpx.Client, admin_state: dict[str, str]
) -> None:
    doc = httpx.get(f"{stack.bff.url}/openapi.json", headers=ADMIN, timeout=30).json()
    calls = _calls(doc, {**PATH_VALUES, **admin_state})
    tried = _assert_no_leak(calls, bob.request)
    assert len(tried) >= 35 and "POST /api/chat" in tried and "GET /api/admin/audit" in tried, tried
    _hr_untouched(stack)


def test_no_endpoint_of_qs_shows_a_collection_to_a_user_who_may_not_read_it(
    stack: Stack, admin_state: dict[str, str]
) -> None:
    """QS enforces by itself: bob named by the internal-token holder, even with the admin token on top."""
    bob = {
        "X-Cairn-Internal-Token": INTERNAL_TOKEN,
        "X-Cairn-User": "bob",
        "X-Cairn-Groups": "eng",
        "X-Cairn-Owner": "user:bob",
        **ADMIN,
    }
    with httpx.Client(base_url=stack.query.url, headers=bob, timeout=60) as client:
        doc = client.get("/openapi.json").json()
        tried = _assert_no_leak(_calls(doc, {**PATH_VALUES, **admin_state}), client.request)
        # A batch into hr is refused before it starts, as a single upload is (not stored later, in the job).
        refused = client.post("/v1/documents/batch", json=BODIES["batch"])
        assert refused.status_code == 403 and refused.json()["reason_code"] == "POLICY_REJECTED", refused.text
    assert f"GET /v1/ingest/{admin_state['job_id']}" in tried and "POST /v1/documents/batch" in tried
    assert "POST /v1/search" in tried and "GET /admin/audit" in tried and "GET /v1/chunks/hr-bonus:0" in tried
    _hr_untouched(stack)


@pytest.mark.browser
@pytest.mark.slow
def test_a_real_browser_signs_in_through_the_page(stack: Stack) -> None:
    """Debian's Chromium: the page offers Sign in, the provider's form signs Alice in, the page says who she is,
    her searches see hr only, and the login cookie is out of the page's scripts' reach (HttpOnly)."""
    from .test_browser import chromium_page

    with chromium_page(1200, 800) as page:
        page.goto(stack.bff.url)
        page.click("#sign-in")
        page.fill("#username", "alice")
        page.click("#sign-in")
        page.wait_for_selector("#who-name")
        assert page.inner_text("#who-name") == "Signed in as Alice (hr)"
        found = page.evaluate(
            """async (q) => {
                const r = await fetch('/api/search', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                      body: JSON.stringify({query: q})});
                return (await r.json()).results.map((h) => h.collection);
            }""",
            QUESTION,
        )
        assert "hr" in found and "eng" not in found, found
        assert "cairn_login" not in page.evaluate("document.cookie")
        assert not page.is_hidden("#permissions") and page.is_hidden("#keys")


def test_a_kept_pdf_is_served_only_to_who_may_read_its_collection(
    stack: Stack, alice: httpx.Client, oidc: ServerProcess
) -> None:
    """The original file is document text too: a PDF kept for hr opens for alice (hr), and is missing to bob."""
    from .test_page_links import two_page_pdf

    data = two_page_pdf()
    with httpx.Client(base_url=stack.bff.url, headers=ADMIN, timeout=60) as admin:
        up = admin.post("/api/documents", data={"collection": "hr"}, files={"file": ("fleet.pdf", data)})
        assert up.status_code == 201, up.text
        doc_id = up.json()["id"]
        assert admin.get(f"/api/documents/{doc_id}/original").content == data
    assert alice.get(f"/api/documents/{doc_id}/original").content == data
    bob = login(stack.bff.url, oidc.url, "bob")  # signed in again: the leak test signs bob out
    try:
        refused = bob.get(f"/api/documents/{doc_id}/original")
    finally:
        bob.close()
    assert refused.status_code == 404 and refused.json()["reason_code"] == "NOT_FOUND", refused.text
    assert data not in refused.content
