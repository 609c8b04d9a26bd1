"""The HTML pages' security headers (issue 20): a CSP that allows no script and only the page's own
style (by hash), no framing, no MIME sniffing, no Referer (the status page's URL holds the function key)."""
from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import requests

from connector.auth.pages import sign_in_failed_page
from connector.ops.status_page import page_headers, render_status_page

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def style_hashes(page: str) -> set[str]:
    return {"sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()
            for s in re.findall(r"<style>(.*?)</style>", page, re.S)}


def test_the_csp_allows_exactly_the_pages_own_style_and_nothing_else() -> None:
    csp = page_headers()["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "script-src" not in directives  # falls back to default-src 'none'
    for page in (render_status_page({"connections": [], "dead_letters": {}}, NOW), sign_in_failed_page("x")):
        assert style_hashes(page) == {directives["style-src"].strip("'")}


def test_the_status_page_and_sign_in_pages_send_the_headers(local_host: Any) -> None:
    host = local_host()
    page = requests.get(f"{host.url}/api/status", headers={"Accept": "text/html"}, timeout=30)
    failed = requests.get(f"{host.url}/api/auth/callback?state=nope&code=x", timeout=30)
    for response in (page, failed):
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
