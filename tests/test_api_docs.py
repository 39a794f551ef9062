"""The interactive API reference at /api/v1/docs: served from this service only.

Deploy sites may have no internet, and this machine has none: the page and
every file it loads come from the service (the Swagger UI files of the
``flask-swagger-ui`` package), under a Content-Security-Policy that allows
nothing else. The browser test renders it in Chromium with every request to
another origin refused.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import service_unavailable

CHROMIUM = "/usr/bin/chromium"


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_reference_page_and_its_files_are_served_here(client) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.content_type == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src" not in policy  # no inline scripts
    assert "frame-ancestors 'none'" in policy
    html = page.get_data(as_text=True)
    assert "<script>" not in html
    references = _references(html)
    assert references and all(ref.startswith("/") for ref in references), references
    types = {}
    for ref in references:
        answer = client.get(ref)
        assert answer.status_code == 200, ref
        types[ref.rsplit(".", 1)[-1]] = answer.content_type.split(";")[0]
    assert types["js"] == "text/javascript"
    assert types["css"] == "text/css"
    assert types["png"] == "image/png"
    assert 'data-spec-url="/api/v1/openapi.json"' in html


def test_only_the_swagger_ui_files_are_served(client) -> None:
    for name in ("__init__.py", "flask_swagger_ui.py", "..%2F__init__.py", "index.template.html"):
        assert client.get(f"/api/v1/docs/assets/{name}").status_code == 404, name


def test_the_page_needs_no_token(client) -> None:
    # As public as the document it renders; "Try it out" asks for a token.
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.browser
def test_the_reference_renders_every_operation_offline(live_server: str) -> None:
    if not shutil.which(CHROMIUM):
        service_unavailable(f"Chromium is not installed at {CHROMIUM} (see .ci/setup)")
    from playwright.sync_api import expect, sync_playwright

    outside: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()

        def only_here(route: Any) -> None:
            if route.request.url.startswith(live_server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_here)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{live_server}/api/v1/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "Marketing consent service"
        )
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        browser.close()
    assert any("/api/v1/contacts" in p for p in paths), paths
    assert outside == [], "the page asked another origin"
    assert problems == [], "console errors (a Content-Security-Policy violation?)"
