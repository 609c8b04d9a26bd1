"""Chaos, end to end: a BC answer carrying a crafted `@odata.nextLink` never takes the token to another
host. The real app runs in the local host; BC_API_HOST is a loopback proxy in front of the emulator that
rewrites every next link into `http://127.0.0.1:<trap>\\@127.0.0.1:<proxy>/...` (urllib.parse reads the
BC host there, urllib3 and so `requests` connect to the trap). The trap is a second listener that
records any request it gets.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.queue_drain import drain_texts

pytestmark = pytest.mark.e2e


class Listener:
    """A loopback HTTP server; `forward_to` set: a proxy to it that rewrites next links with `rewrite`;
    unset: a trap answering 200 `{"value": []}` and recording every request's path and Authorization."""

    def __init__(self, forward_to: str | None = None, verify: str | bool = True,
                 rewrite: Callable[[str], str] = lambda link: link) -> None:
        self.seen: list[tuple[str, str | None]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                listener.seen.append((self.path, self.headers.get("Authorization")))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, data = 200, {"Content-Type": "application/json"}, b'{"value": []}'
                if forward_to is not None:
                    sent = {k: v for k, v in self.headers.items()
                            if k.lower() not in ("host", "content-length")}
                    answer = requests.request(self.command, forward_to + self.path, data=body or None,
                                              headers=sent, verify=verify, timeout=60)
                    status, data = answer.status_code, answer.content
                    headers = {k: v for k, v in answer.headers.items()
                               if k.lower() in ("content-type", "etag", "retry-after", "date", "location")}
                    if b"@odata.nextLink" in data:
                        document = json.loads(data)
                        document["@odata.nextLink"] = rewrite(document["@odata.nextLink"])
                        data = json.dumps(document).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _any  # noqa: N815 (http.server's names)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap_and_proxy(emulator: Any) -> Iterator[tuple[Listener, Listener]]:
    trap = Listener()
    proxy: Listener

    def crafted(link: str) -> str:
        return re.sub(r"^https?://[^/]+", f"http://127.0.0.1:{trap.port}\\\\@127.0.0.1:{proxy.port}", link)

    proxy = Listener(emulator.url, emulator.ca_bundle, crafted)
    yield trap, proxy
    proxy.stop()
    trap.stop()


def test_a_crafted_next_link_in_a_bc_page_never_takes_the_token_to_another_host(local_host, trap_and_proxy):
    trap, proxy = trap_and_proxy
    host = local_host(BC_API_HOST=proxy.url, ITEM_PULL_PAGE_SIZE="5", BC_MAX_RETRIES="0")

    response = requests.post(f"{host.url}/api/connections/default/pulls/items", timeout=60)
    assert response.status_code == 202, response.text
    host.wait_idle(60)

    from connector.runtime import get_runtime

    assert any("/items" in path and auth for path, auth in proxy.seen)  # BC was read, with the token
    assert trap.seen == []  # the crafted next link reached nothing: no request, so no token
    poisoned = drain_texts(get_runtime().storage.queue("bc-item-pulls-poison"))
    assert len(poisoned) == 1 and json.loads(poisoned[0])["connection"] == "default"
