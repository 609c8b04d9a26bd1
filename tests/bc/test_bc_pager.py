"""The one pager: next links stay on the BC host (the token is never sent elsewhere, not even to a
link read back from `bccursors`), a repeating link stops the read, prefetch and stopping early.

Real loopback HTTP servers stand in for BC and for a foreign host; each records the requests it got
and whether they carried an Authorization header. The cursor-table cases run the item pull and the
sweep against the emulator and Azurite with a saved link pointing at the foreign recorder.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connector.bc.budget import RequestBudget
from connector.bc.client import BCClient
from connector.bc.pager import ForeignLink, RepeatedLink
from connector.bc.timestamps import iso, utc_now
from connector.items.pull import ItemPullRequest, request_message
from connector.retry import RetryPolicy
from connector.settings import TABLE_CURSORS
from connector.storage import table_key
from connector.webhooks import sweep
from devtools.emulator.seed import CRONUS_UK_ID
from tests.queue_drain import drain_texts

TOKEN = "secret-bearer-token"
API = "/v2.0/tenant/production/api/v2.0"


@dataclass
class Seen:
    path: str
    authorization: str | None


class Recorder:
    """A loopback HTTP server answering `answers[path]` (JSON, 200; else 404) and recording every
    request with its Authorization header."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.seen: list[Seen] = []
        self.arrived = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with recorder.arrived:
                    recorder.seen.append(Seen(self.path, self.headers.get("Authorization")))
                    recorder.arrived.notify_all()
                body = recorder.answers.get(self.path.split("?", 1)[0])
                data = json.dumps(body if body is not None else {"error": {"code": "NotFound"}}).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.seen) >= count, 30)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[Callable[[], Recorder]]:
    started: list[Recorder] = []

    def make() -> Recorder:
        started.append(Recorder())
        return started[-1]

    yield make
    for recorder in started:
        recorder.stop()


def client_on(bc: Recorder) -> BCClient:
    return BCClient(bc.url + API, lambda force: TOKEN, budget=RequestBudget(5, 6000, 300.0),
                    retry=RetryPolicy(max_retries=0), timeout=30, connection="test")


def page(values: list[Any], next_link: str | None = None) -> dict[str, Any]:
    return {"value": values, **({"@odata.nextLink": next_link} if next_link else {})}


# ---- loopback servers: the token stays home ------------------------------------------------------

def test_a_next_link_to_another_host_is_refused_and_the_token_never_reaches_it(recorders) -> None:
    bc, foreign = recorders(), recorders()
    bc.answers[f"{API}/items"] = page([{"id": "1"}], f"{foreign.url}{API}/items?$skiptoken=1")
    foreign.answers[f"{API}/items"] = page([{"id": "2"}])
    client = client_on(bc)

    with pytest.raises(ForeignLink) as refused:
        list(client.pages("items"))

    assert foreign.url.replace("http://", "") in str(refused.value) and not refused.value.retryable
    assert foreign.seen == []  # not a single request, so no token
    assert [s.authorization for s in bc.seen] == [f"Bearer {TOKEN}"]


def test_a_next_link_on_the_same_host_but_another_port_or_scheme_is_refused(recorders) -> None:
    bc, other_port = recorders(), recorders()
    https_twin = bc.url.replace("http://", "https://")
    for link in (f"{other_port.url}{API}/items?$skiptoken=1", f"{https_twin}{API}/items?$skiptoken=1"):
        bc.answers[f"{API}/items"] = page([{"id": "1"}], link)
        with pytest.raises(ForeignLink):
            list(client_on(bc).pages("items"))
    assert other_port.seen == []
    assert len(bc.seen) == 2


def test_any_absolute_url_off_the_bc_host_is_refused_before_a_token_is_asked_for(recorders) -> None:
    foreign = recorders()
    asked: list[bool] = []
    client = BCClient("https://bc.invalid" + API, lambda force: asked.append(force) or TOKEN,
                      budget=RequestBudget(5, 6000, 300.0))
    with pytest.raises(ForeignLink):
        client.get(f"{foreign.url}{API}/items")
    assert asked == [] and foreign.seen == []


def test_a_relative_next_link_is_followed_on_the_bc_host(recorders) -> None:
    bc = recorders()
    bc.answers[f"{API}/items"] = page([{"id": "1"}], "items2?$skiptoken=1")
    bc.answers[f"{API}/items2"] = page([{"id": "2"}])
    assert [p.entities for p in client_on(bc).pages("items")] == [[{"id": "1"}], [{"id": "2"}]]


def test_a_next_link_that_comes_round_again_stops_the_read(recorders) -> None:
    bc = recorders()
    bc.answers[f"{API}/a"] = page([{"id": "1"}], f"{bc.url}{API}/b?$skiptoken=1")
    bc.answers[f"{API}/b"] = page([{"id": "2"}], f"{bc.url}{API}/c?$skiptoken=2")
    bc.answers[f"{API}/c"] = page([{"id": "3"}], f"{bc.url}{API}/b?$skiptoken=1")  # back to b
    read: list[list[Any]] = []

    with pytest.raises(RepeatedLink, match="came round again"):
        read.extend(p.entities for p in client_on(bc).pages("a"))

    assert read == [[{"id": "1"}], [{"id": "2"}]]  # the page with the repeating link is not handed on
    assert [s.path.split("?")[0].rsplit("/", 1)[-1] for s in bc.seen] == ["a", "b", "c"]


def test_a_link_repeating_itself_stops_even_when_resumed_from_it(recorders) -> None:
    bc = recorders()
    link = f"{bc.url}{API}/items?$skiptoken=5"
    bc.answers[f"{API}/items"] = page([{"id": "5"}], link)
    with pytest.raises(RepeatedLink):
        list(client_on(bc).pages("items", resume_from=link))
    assert len(bc.seen) == 1


@pytest.mark.parametrize("shape", ["{foreign}{API}/items?$skiptoken=1",
                                   "{foreign}\\@{bc_authority}{API}/items?$skiptoken=1"])
def test_a_saved_link_on_another_host_is_refused_without_a_request(recorders, shape) -> None:
    bc, foreign = recorders(), recorders()
    saved = shape.format(foreign=foreign.url, API=API, bc_authority=bc.url.removeprefix("http://"))
    with pytest.raises(ForeignLink, match="saved link"):
        list(client_on(bc).pages("items", resume_from=saved))
    assert foreign.seen == [] and bc.seen == []


def test_prefetch_asks_for_the_next_page_while_the_caller_holds_this_one(recorders) -> None:
    bc = recorders()
    bc.answers[f"{API}/items"] = page([{"id": "1"}], f"{bc.url}{API}/items2")
    bc.answers[f"{API}/items2"] = page([{"id": "2"}])
    pages = client_on(bc).pages("items", prefetch=True)
    first = next(pages)
    bc.wait_for(2)  # the second request arrives before the caller asks for it
    assert first.entities == [{"id": "1"}]
    assert [p.entities for p in pages] == [[{"id": "2"}]]
    assert len(bc.seen) == 2


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_read_told_not_to_go_on_ends_after_the_page_with_its_resume_link(recorders, prefetch) -> None:
    bc = recorders()
    bc.answers[f"{API}/items"] = page([{"id": "1"}], f"{bc.url}{API}/items2")
    [only] = client_on(bc).pages("items", prefetch=prefetch, go_on=lambda: False)
    assert only.next_link == f"{bc.url}{API}/items2"
    assert len(bc.seen) == 1


# ---- the cursor table: a saved link on another host (emulator + Azurite) -------------------------

def test_an_item_pull_resuming_from_a_foreign_saved_link_refuses_it_and_sends_no_token(
        connector_env, recorders) -> None:
    from connector.runtime import get_runtime

    connector_env(BC_MAX_RETRIES="0")
    runtime = get_runtime()
    foreign = recorders()
    runtime.storage.table(TABLE_CURSORS).create_entity({
        "PartitionKey": "default", "RowKey": table_key(f"items:{CRONUS_UK_ID}"), "phase": "items",
        "run_started": iso(utc_now()), "next_link": f"{foreign.url}{API}/companies({CRONUS_UK_ID})/items"})
    with pytest.raises(ForeignLink, match="saved link"):
        runtime.item_pull.pull_company("default", max_seconds=60)
    request = request_message(runtime.settings, ItemPullRequest.model_validate_json(
        '{"connection": "default", "requestedAt": "2026-11-29T12:00:00Z"}'))
    runtime.item_pull.handle_pull_request(request, "m-1")  # needs a person: kept on poison at once
    assert drain_texts(runtime.storage.queue("bc-item-pulls-poison")) == [request]
    assert foreign.seen == []


def test_a_sweep_resuming_from_a_foreign_saved_link_refuses_it_and_sends_no_token(
        connector_env, recorders) -> None:
    from connector.runtime import get_runtime

    connector_env(BC_MAX_RETRIES="0")
    runtime = get_runtime()
    company_id = runtime.company_id()
    foreign = recorders()
    now = iso(utc_now())
    runtime.storage.table(TABLE_CURSORS).create_entity({
        "PartitionKey": "default", "RowKey": f"sweep:items:{company_id.lower()}", "cursor": now,
        "started_at": now, "updated_at": now, "run_started": now, "pending_cursor": "", "held_before": "",
        "next_link": f"{foreign.url}{API}/companies({company_id})/items?$skiptoken=1"})
    items = runtime.settings.connection("default").trigger("items")
    with pytest.raises(ForeignLink, match="saved link"):
        sweep.sweep(runtime, "default", (items,))
    assert foreign.seen == []
