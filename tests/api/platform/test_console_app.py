"""The web console's static files through the ingress app (no Ray, no browser).

The browser tests (tests/serve/test_console_serve.py) drive the pages; these check that
the ingress serves every file a page loads and that the pages call only public routes.
"""

from __future__ import annotations

import re

import httpx
import pytest

from visionserve.api.app import create_app
from visionserve.console import PAGES, STATIC_DIR
from visionserve.platform.context import build_context
from visionserve.surfaces import NAMES, load_surface

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

MOUNTS = tuple(load_surface(n).mount for n in NAMES)


@pytest.fixture
async def client(settings):  # type: ignore[no-untyped-def]
    async def status() -> dict[str, str]:
        return {"ingress": "HEALTHY"}

    app = create_app(
        build_context(settings, cluster_status=status), [load_surface(n) for n in NAMES]
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@SQLITE
async def test_root_links_to_the_console_and_the_docs(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/ui/"' in r.text
    for file, _ in PAGES:
        assert f'href="/ui/{file}"' in r.text
    for mount in MOUNTS:
        assert f'href="{mount}/docs"' in r.text
    assert (await client.get("/ui")).status_code in (307, 308)  # to /ui/
    index = await client.get("/ui/")
    assert index.status_code == 200 and "VisionServe console" in index.text


@SQLITE
async def test_every_file_a_page_loads_is_served(client) -> None:  # type: ignore[no-untyped-def]
    seen: set[str] = set()
    todo = ["index.html", *(file for file, _ in PAGES)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = await client.get(f"/ui/{path}")
        assert r.status_code == 200, path
        base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        if path.endswith(".html"):
            refs = re.findall(r'(?:src|href)="((?:css|js)/[^"]+)"', r.text)
            assert refs, path
            todo += refs
        elif path.endswith(".js") and not path.startswith("vendor/"):
            for ref in re.findall(r'from "(\.{1,2}/[^"]+)"', r.text):
                todo.append(_join(base, ref))
    assert "vendor/pdfjs/pdf.min.mjs" in seen
    assert (await client.get("/ui/vendor/pdfjs/pdf.worker.min.mjs")).status_code == 200
    assert (await client.get("/ui/nope.html")).status_code == 404


def _join(base: str, ref: str) -> str:
    parts = [p for p in base.split("/") if p]
    for piece in ref.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def test_pages_call_only_the_surfaces_public_routes() -> None:
    """Every absolute path in the console's scripts is under a surface's mount."""
    paths = set()
    for script in (STATIC_DIR / "js").glob("*.js"):
        text = script.read_text()
        paths |= set(re.findall(r'["`](/[a-z][^"`$?]*)', text))
        # Prefix constants (API = "/inspect/api") are what the template literals extend.
    assert paths
    outside = sorted(p for p in paths if not p.startswith(MOUNTS))
    assert outside == [], outside
