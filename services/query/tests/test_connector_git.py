"""Git sync against a real QS and a real repository (`git init` in tmp_path): its Markdown and reST files at
the branch's newest commit, with commits that change, add, rename and delete files reflected, a rename
without any embedding, and the files QS does not read (code) left out."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_query.connectors.sync import document_id
from cairn_testing import ServerProcess

from .conftest import start_qs
from .connector_helpers import FAST, admin, embedded, paths_found, texts_of


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "HOME": str(repo.parent),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def commit(repo: Path, files: dict[str, str | None], message: str) -> None:
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            git(repo, "rm", "-q", rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", rel)
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def qs(toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("qs-git") / "qs.sqlite3", **FAST)
    yield srv
    srv.stop()


def test_git_sync_follows_commits_and_renames_without_embedding(qs: ServerProcess, tmp_path: Path) -> None:
    repo = tmp_path / "handbook"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(
        repo,
        {
            "README.md": "# Handbook\n\nThe handbook explains how the badger team works.\n",
            "docs/deploy.rst": "Deploy\n======\n\nDeploys of the mongoose service happen on Wednesdays.\n",
            "docs/oncall.md": "# On call\n\nThe wombat rota changes every Monday.\n",
            "src/app.py": "print('the otter code is not a document')\n",
        },
        "first",
    )
    with admin(qs) as client:
        body = {"name": "handbook", "kind": "git", "config": {"repo": str(repo), "branch": "main"}}
        assert (
            client.post("/v1/connectors", json={**body, "collection": "hb", "interval_s": 0}).status_code
            == 201
        )
        first = client.post("/v1/connectors/handbook/run", params={"wait": "true"}).json()["status"]
        assert (first["state"], first["seen"], first["added"]) == ("ok", 3, 3), first
        assert paths_found(client, "mongoose deploys Wednesdays", "hb")[0] == "docs/deploy.rst"
        assert "src/app.py" not in paths_found(client, "otter code", "hb")

        before = embedded(qs)
        commit(repo, {"docs/oncall.md": None}, "rename, part 1")
        (repo / "docs").mkdir(exist_ok=True)
        commit(repo, {"people/oncall.md": "# On call\n\nThe wombat rota changes every Monday.\n"}, "rename")
        moved = client.post("/v1/connectors/handbook/run", params={"wait": "true"}).json()["status"]
        assert (moved["renamed"], moved["unchanged"], moved["added"], moved["deleted"]) == (1, 2, 0, 0), moved
        assert embedded(qs) == before, "a renamed file was embedded again"
        assert paths_found(client, "wombat rota Monday", "hb")[0] == "people/oncall.md"

        commit(
            repo,
            {
                "docs/deploy.rst": "Deploy\n======\n\nDeploys of the mongoose service happen on Thursdays.\n",
                "docs/faq.md": "# FAQ\n\nThe capybara question is answered here.\n",
                "README.md": None,
            },
            "change, add, delete",
        )
        third = client.post("/v1/connectors/handbook/run", params={"wait": "true"}).json()["status"]
        assert (third["changed"], third["added"], third["deleted"]) == (1, 1, 1), third
        ids = [document_id("handbook", "docs/deploy.rst"), document_id("handbook", "docs/faq.md")]
        assert embedded(qs) - before == texts_of(client, ids)
        assert paths_found(client, "capybara question", "hb")[0] == "docs/faq.md"
        assert "README.md" not in paths_found(client, "badger team handbook", "hb")


def test_a_git_url_that_would_run_a_command_is_refused(qs: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with admin(qs) as client:
        config = {"repo": f"ext::sh -c touch% {marker}"}
        body = {"name": "evil", "kind": "git", "config": config, "interval_s": 0}
        assert client.post("/v1/connectors", json=body).status_code == 201
        run = client.post("/v1/connectors/evil/run", params={"wait": "true"}).json()["status"]
        assert run["state"] == "failed" and run["error"]["reason_code"] == "SOURCE_UNAVAILABLE"
        assert not marker.exists()
        assert (
            client.post(
                "/v1/connectors", json={**body, "name": "opt", "config": {"repo": "--upload-pack=x"}}
            ).status_code
            == 400
        )
