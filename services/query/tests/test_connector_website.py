"""Website sync against a real QS and a real local web server (http.server in a thread): robots.txt obeyed,
same host only, depth and page caps, conditional GETs (304) for pages already stored, and changes, new
pages and removed pages reflected."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cairn_testing import ServerProcess

from .conftest import start_qs
from .connector_helpers import FAST, admin, embedded, paths_found


class Site:
    """Pages by path; every request is logged with the status it got."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.log: list[tuple[str, int]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.pages.get(self.path)
                if body is None:
                    site.log.append((self.path, 404))
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    site.log.append((self.path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                site.log.append((self.path, 200))
                data = body.encode()
                self.send_response(200)
                kind = "text/plain" if self.path.endswith(".txt") else "application/xml"
                self.send_header("Content-Type", "text/html" if "<html" in body else kind)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def requested(self, path: str) -> list[int]:
        return [status for p, status in self.log if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def page(title: str, text: str, *links: str) -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p><ul>{anchors}</ul></body></html>"


@pytest.fixture()
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture(scope="module")
def qs(toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("qs-web") / "qs.sqlite3", **FAST)
    yield srv
    srv.stop()


def test_website_crawl_obeys_robots_host_and_depth_and_syncs_changes(qs: ServerProcess, site: Site) -> None:
    site.pages = {
        "/robots.txt": "User-agent: *\nDisallow: /private/\n",
        "/": page(
            "Home",
            "Welcome to the lighthouse wiki.",
            "/guide.html",
            "/private/keys.html",
            "http://example.invalid/elsewhere",
            "#top",
            "/style.css",
        ),
        "/guide.html": page("Guide", "The lighthouse lamp is cleaned every Monday.", "/deep/one.html"),
        "/deep/one.html": page("Deep", "The lighthouse keeper logs the weather hourly.", "/deep/two.html"),
        "/deep/two.html": page("Too deep", "The puffin count is beyond the depth cap."),
        "/private/keys.html": page("Keys", "The vault code is 1234."),
    }
    with admin(qs) as client:
        config = {"start_url": f"{site.url}/", "max_depth": 2}
        body = {"name": "wiki", "kind": "website", "config": config, "collection": "wiki", "interval_s": 0}
        assert client.post("/v1/connectors", json=body).status_code == 201
        first = client.post("/v1/connectors/wiki/run", params={"wait": "true"}).json()["status"]
        assert (first["state"], first["added"], first["failed"]) == ("ok", 3, 0), first
        assert site.requested("/private/keys.html") == []  # disallowed: never asked for
        assert site.requested("/deep/two.html") == []  # three clicks away, the cap is two
        assert site.requested("/style.css") == []
        assert paths_found(client, "lighthouse lamp cleaned", "wiki")[0] == f"{site.url}/guide.html"

        # Unchanged: every page is asked for with its ETag, answered 304, and nothing is embedded.
        before = embedded(qs)
        again = client.post("/v1/connectors/wiki/run", params={"wait": "true"}).json()["status"]
        assert (again["unchanged"], again["added"], again["changed"]) == (3, 0, 0)
        assert site.requested("/guide.html") == [200, 304] and embedded(qs) == before

        # A page changes, one disappears, one is new.
        site.pages["/guide.html"] = page(
            "Guide", "The lighthouse lamp is cleaned every Thursday.", "/news.html"
        )
        site.pages["/news.html"] = page("News", "The new foghorn arrives in spring.")
        del site.pages["/deep/one.html"]
        third = client.post("/v1/connectors/wiki/run", params={"wait": "true"}).json()["status"]
        assert (third["changed"], third["added"], third["deleted"]) == (1, 1, 1), third
        assert embedded(qs) > before
        assert paths_found(client, "foghorn arrives spring", "wiki")[0] == f"{site.url}/news.html"
        assert f"{site.url}/deep/one.html" not in paths_found(client, "keeper logs weather", "wiki")


def test_a_sitemap_lists_the_pages_and_a_down_site_deletes_nothing(qs: ServerProcess, site: Site) -> None:
    site.pages = {
        "/robots.txt": "User-agent: *\nAllow: /\n",
        "/sitemap.xml": "<urlset><url><loc>{0}/a.html</loc></url><url><loc>{0}/notes.txt</loc></url>"
        "<url><loc>http://other.invalid/x.html</loc></url></urlset>",
        "/a.html": page("A", "The walrus manual covers tusk care."),
        "/notes.txt": "The narwhal notes are plain text.",
    }
    site.pages["/sitemap.xml"] = site.pages["/sitemap.xml"].format(site.url)
    with admin(qs) as client:
        config = {"sitemap_url": f"{site.url}/sitemap.xml", "max_depth": 0}
        body = {"name": "maps", "kind": "website", "config": config, "collection": "maps", "interval_s": 0}
        assert client.post("/v1/connectors", json=body).status_code == 201
        first = client.post("/v1/connectors/maps/run", params={"wait": "true"}).json()["status"]
        assert (first["state"], first["added"]) == ("ok", 2), first
        assert paths_found(client, "narwhal notes", "maps")[0] == f"{site.url}/notes.txt"
        site.close()  # the site goes down: the run fails, and what was stored stays
        down = client.post("/v1/connectors/maps/run", params={"wait": "true"}).json()["status"]
        assert down["state"] == "failed" and down["error"]["reason_code"] == "SOURCE_UNAVAILABLE"
        assert down["deleted"] == 0 and paths_found(client, "walrus tusk", "maps")[0] == f"{site.url}/a.html"


def test_robots_txt_can_forbid_the_whole_site(qs: ServerProcess, site: Site, tmp_path: Path) -> None:
    site.pages = {"/robots.txt": "User-agent: *\nDisallow: /\n", "/": page("Home", "Nothing for bots.")}
    with admin(qs) as client:
        body = {"name": "closed", "kind": "website", "config": {"start_url": f"{site.url}/"}, "interval_s": 0}
        assert client.post("/v1/connectors", json=body).status_code == 201
        run = client.post("/v1/connectors/closed/run", params={"wait": "true"}).json()["status"]
        assert (run["state"], run["seen"]) == ("ok", 0) and site.requested("/") == []
