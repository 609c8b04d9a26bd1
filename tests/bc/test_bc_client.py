"""The BC client: paging, typed errors, retries honouring Retry-After, token refresh, request budget.

Unit tests for the budget's sliding window and the retry arithmetic; the rest against the emulator
(demo seed, client credentials), with the client's back-off sleeps recorded instead of slept.
"""
from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from connector.bc.budget import RequestBudget
from connector.bc.client import BCClient
from connector.bc.errors import BCAuthError, BCConflict, BCError, BCNotFound, error_from_response
from connector.retry import RetryPolicy, parse_retry_after
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID

ITEMS = f"companies({CRONUS_UK_ID})/items"
USA_ITEMS = f"companies({CRONUS_USA_ID})/items"  # written to by tests; ITEMS stays as seeded


# ---- unit: budget window and retry arithmetic ----------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_budget_waits_until_the_oldest_request_leaves_the_window() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, 3, 10.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        budget.acquire()
        budget.release()
    clock.now = 4.0
    budget.acquire()
    budget.release()
    assert clock.now == pytest.approx(10.0)
    assert sum(clock.slept) == pytest.approx(6.0)


def test_budget_does_not_wait_when_requests_are_spread_over_the_window() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, 3, 10.0, clock=clock, sleep=clock.sleep)
    for second in range(0, 30, 4):
        clock.now = float(second)
        budget.acquire()
        budget.release()
    assert clock.slept == []


def test_retry_delay_is_at_least_retry_after_else_capped_exponential() -> None:
    policy = RetryPolicy(max_retries=6, backoff_seconds=1.0, backoff_max_seconds=8.0)
    assert 7.0 <= policy.delay(0, 7.0) <= 7.1
    assert policy.delay(0, 1000.0) <= policy.retry_after_max_seconds + 0.1
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 8.0)]:
        assert ceiling / 2 <= policy.delay(attempt, None) <= ceiling


def test_retry_after_in_seconds_or_http_date() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("0.25") == 0.25  # the emulator's sub-second test settings
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after(in_30_s) == pytest.approx(30.0, abs=2.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(("status", "cls", "retryable", "ambiguous_for_post"), [
    (400, BCError, False, False), (401, BCAuthError, False, False), (404, BCNotFound, False, False),
    (409, BCConflict, False, False), (429, BCError, True, False), (503, BCError, True, False),
    (500, BCError, True, True), (502, BCError, True, True), (504, BCError, True, True),
])
def test_bc_error_json_becomes_a_typed_error(status: int, cls: type, retryable: bool,
                                            ambiguous_for_post: bool) -> None:
    body = {"error": {"code": "Some_Code", "message": "Something.  CorrelationId:  x."}}
    error = error_from_response(status, body, method="POST", path="/p", idempotent=False)
    assert type(error) is cls
    assert (error.status, error.code, error.retryable, error.ambiguous) == (
        status, "Some_Code", retryable, ambiguous_for_post)
    assert not error_from_response(status, body, idempotent=True).ambiguous


# ---- against the emulator ------------------------------------------------------------------------

@pytest.fixture
def clean_emulator(emulator: Any) -> Iterator[Any]:
    emulator.faults.clear()
    emulator.clear_requests()
    yield emulator
    emulator.faults.clear()


@pytest.fixture
def make_client(runtime: Any, clean_emulator: Any) -> Callable[..., tuple[BCClient, list[float]]]:
    """Factory: a BC client on the default connection whose back-off sleeps are recorded, not slept."""

    def make(token: Callable[[bool], str] | None = None, **kwargs: Any) -> tuple[BCClient, list[float]]:
        sleeps: list[float] = []
        conn = runtime.settings.connection("default")
        client = BCClient(
            conn.api_base,
            token or (lambda force: runtime.tokens.access_token("default", force_refresh=force)),
            budget=RequestBudget(5, 6000, 300.0),
            retry=RetryPolicy(max_retries=4, backoff_seconds=0.01, backoff_max_seconds=0.05),
            verify=clean_emulator.ca_bundle, connection="default", sleep=sleeps.append, **kwargs,
        )
        return client, sleeps

    return make


def logged(emulator: Any, method: str, suffix: str) -> list[Any]:
    return [r for r in emulator.requests if r.method == method and r.path.endswith(suffix)]


def test_pages_follow_next_link_with_one_request_per_page(make_client: Callable[..., Any],
                                                          clean_emulator: Any) -> None:
    client, _ = make_client()
    pages = list(client.iter_pages(ITEMS, {"$select": "id,number"}, page_size=7))
    assert [len(p) for p in pages] == [7, 7, 6]
    assert len({item["id"] for page in pages for item in page}) == 20
    assert len(logged(clean_emulator, "GET", "/items")) == 3


def test_bc_errors_arrive_typed_with_bc_code(make_client: Callable[..., Any]) -> None:
    client, sleeps = make_client()
    with pytest.raises(BCNotFound) as missing:
        client.get(f"{ITEMS}({uuid.uuid4()})")
    assert missing.value.code == "Internal_RecordNotFound" and not missing.value.retryable

    number = f"T-{uuid.uuid4().hex[:8].upper()}"
    item = client.post(USA_ITEMS, {"number": number, "displayName": "Typed errors"})
    path = f"{USA_ITEMS}({item['id']})"
    with pytest.raises(BCError) as no_etag:
        client.request("PATCH", path, json_body={"displayName": "No If-Match"})
    assert (no_etag.value.status, no_etag.value.code) == (400, "BadRequest_InvalidToken")
    client.patch(path, {"displayName": "Changed"}, item["@odata.etag"])
    with pytest.raises(BCConflict) as stale:
        client.patch(path, {"displayName": "Stale"}, item["@odata.etag"])
    assert stale.value.code == "Request_EntityChanged"
    assert sleeps == []


@pytest.mark.parametrize("status", [429, 503])
def test_throttled_request_waits_at_least_retry_after_then_succeeds(
        make_client: Callable[..., Any], clean_emulator: Any, status: int) -> None:
    clean_emulator.faults.add_rule(action="error_before", status=status, retry_after=3,
                                   count=2, path_regex=r"/companies$")
    client, sleeps = make_client()
    assert len(client.get("companies")["value"]) == 2
    assert [r.status for r in logged(clean_emulator, "GET", "/companies")] == [status, status, 200]
    assert len(sleeps) == 2 and all(s >= 3 for s in sleeps)


def test_gives_up_after_max_retries_with_a_retryable_error(make_client: Callable[..., Any],
                                                           clean_emulator: Any) -> None:
    clean_emulator.faults.add_rule(action="error_before", status=503, retry_after=1, count=None,
                                   path_regex=r"/companies$")
    client, sleeps = make_client()
    with pytest.raises(BCError) as caught:
        client.get("companies")
    assert caught.value.status == 503 and caught.value.retryable
    assert len(sleeps) == 4 and len(logged(clean_emulator, "GET", "/companies")) == 5


def test_a_call_stops_waiting_once_its_total_back_off_would_pass_the_limit(
        runtime: Any, clean_emulator: Any) -> None:
    clean_emulator.faults.add_rule(action="error_before", status=429, retry_after=40, count=None,
                                   path_regex=r"/companies$")
    sleeps: list[float] = []
    client = BCClient(runtime.settings.connection("default").api_base,
                      lambda force: runtime.tokens.access_token("default", force_refresh=force),
                      budget=RequestBudget(5, 6000, 300.0), verify=clean_emulator.ca_bundle,
                      retry=RetryPolicy(max_retries=10, total_sleep_max_seconds=100.0),
                      sleep=sleeps.append)
    with pytest.raises(BCError) as caught:
        client.get("companies")
    assert caught.value.status == 429
    assert len(sleeps) == 2 and sum(sleeps) <= 100.0  # a third 40 s wait would pass 100 s


def test_post_is_not_retried_when_bc_may_have_carried_it_out(make_client: Callable[..., Any],
                                                              clean_emulator: Any) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    clean_emulator.faults.add_rule(action="error_after_commit", method="POST", status=502,
                                   path_regex=r"/items$")
    client, sleeps = make_client()
    with pytest.raises(BCError) as caught:
        client.post(USA_ITEMS, {"number": number, "displayName": "Ambiguous"})
    assert caught.value.ambiguous and caught.value.status == 502
    assert len(logged(clean_emulator, "POST", "/items")) == 1 and sleeps == []
    created = client.get(USA_ITEMS, {"$filter": f"number eq '{number}'"})["value"]
    assert len(created) == 1  # it was carried out: a retry would have made a duplicate


def test_post_timeout_is_ambiguous_and_not_retried(make_client: Callable[..., Any],
                                                   clean_emulator: Any) -> None:
    clean_emulator.faults.add_rule(action="timeout_after_commit", method="POST", hold_seconds=0.6,
                                   path_regex=r"/items$")
    client, sleeps = make_client(timeout=0.2)
    with pytest.raises(BCError) as caught:
        client.post(USA_ITEMS, {"number": f"B-{uuid.uuid4().hex[:8].upper()}", "displayName": "Late"})
    assert caught.value.ambiguous and caught.value.status is None and sleeps == []
    deadline = time.monotonic() + 30
    while not logged(clean_emulator, "POST", "/items") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(logged(clean_emulator, "POST", "/items")) == 1


def test_post_is_retried_when_bc_refused_it_unprocessed(make_client: Callable[..., Any],
                                                        clean_emulator: Any) -> None:
    number = f"C-{uuid.uuid4().hex[:8].upper()}"
    clean_emulator.faults.add_rule(action="error_before", method="POST", status=429, retry_after=1,
                                   path_regex=r"/items$")
    client, sleeps = make_client()
    client.post(USA_ITEMS, {"number": number, "displayName": "Retried"})
    assert [r.status for r in logged(clean_emulator, "POST", "/items")] == [429, 201]
    assert len(client.get(USA_ITEMS, {"$filter": f"number eq '{number}'"})["value"]) == 1
    assert len(sleeps) == 1 and sleeps[0] >= 1


def test_refused_token_is_refreshed_once(make_client: Callable[..., Any], runtime: Any,
                                         clean_emulator: Any) -> None:
    asked: list[bool] = []

    def token(force: bool) -> str:
        asked.append(force)
        return runtime.tokens.access_token("default", force_refresh=True) if force else "not-a-token"

    client, _ = make_client(token)
    assert client.get("companies")["value"]
    assert asked == [False, True]
    assert [r.status for r in logged(clean_emulator, "GET", "/companies")] == [401, 200]


def test_token_refused_again_after_refresh_raises_auth_error(make_client: Callable[..., Any],
                                                             clean_emulator: Any) -> None:
    asked: list[bool] = []

    def token(force: bool) -> str:
        asked.append(force)
        return "still-not-a-token"

    client, sleeps = make_client(token)
    with pytest.raises(BCAuthError) as caught:
        client.get("companies")
    assert caught.value.status == 401 and caught.value.code == "Authentication_InvalidCredentials"
    assert asked == [False, True] and sleeps == []
    assert len(logged(clean_emulator, "GET", "/companies")) == 2


def test_budget_keeps_at_most_five_requests_in_flight(make_client: Callable[..., Any],
                                                      clean_emulator: Any) -> None:
    clean_emulator.faults.configure({"latency_seconds": 0.15})
    client, _ = make_client()
    client.get("companies")  # token fetched before the burst
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: client.get("companies"), range(30)))
    assert all(len(r["value"]) == 2 for r in results)
    assert client.budget.max_in_flight == 5
    assert {r.status for r in clean_emulator.requests} == {200}


def test_every_connection_s_client_shares_one_session_that_keeps_no_cookie(connector_env):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from connector.bc.client import bc_session
    from connector.runtime import get_runtime

    connector_env(BC_CONNECTIONS="default,emea")
    runtime = get_runtime()
    assert runtime.bc("default").session is runtime.bc("emea").session is runtime.bc_session
    seen = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.send_header("Set-Cookie", "tenant=A; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        session = bc_session(4)
        for tenant in ("a", "b"):  # one tenant's answer, then another tenant's request
            url = f"http://127.0.0.1:{server.server_port}/v2.0/{tenant}/production/api/v2.0"
            session.get(url, timeout=10)
    finally:
        server.shutdown()
    assert seen == [None, None] and len(session.cookies) == 0
