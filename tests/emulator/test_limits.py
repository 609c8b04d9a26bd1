"""BC limits and fault injection in front of the BC API (stand-in BC app, real https server)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from devtools.emulator import Emulator, EmulatorConfig
from devtools.emulator.limits import FaultRule, Faults
from tests.waiting import wait_until

CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"


class StandInBC:
    """A tiny WSGI "BC": counts concurrency, records committed POSTs; while `gate` is closed
    (cleared) every request waits at it, so tests control overlap without timing."""

    def __init__(self, config: Any, clock: Any, validate_token: Callable[[str], dict]) -> None:
        self.validate_token = validate_token
        self.gate = threading.Event()
        self.gate.set()
        self.committed: list[str] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            auth = environ.get("HTTP_AUTHORIZATION", "")
            if not auth.startswith("Bearer "):
                start_response("401 Unauthorized", [("Content-Type", "application/json")])
                return [b'{"error":{"code":"Authentication_InvalidCredentials","message":"x"}}']
            self.gate.wait(30)
            if environ["REQUEST_METHOD"] == "POST":
                with self._lock:
                    self.committed.append(environ["PATH_INFO"])
            body = json.dumps({"value": []}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture(autouse=True)
def _unset_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def make() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(**config: Any) -> Emulator:
        emu = Emulator(EmulatorConfig(**config), bc_factory=StandInBC).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


APP = "<app>"  # `call(user=APP)` sends an app-only (client credentials) token


def call(emu: Emulator, user: str | None = "admin@lmints.io", method: str = "GET",
         path: str = "/companies", timeout: float = 10, **kwargs: Any) -> requests.Response:
    headers = {}
    if user is not None:
        token = emu.entra.issue_access_token(CLIENT_ID, "lmints.io", None if user == APP else user)
        headers["Authorization"] = f"Bearer {token}"
    url = emu.bc_base("lmints.io", "production") + path
    return requests.request(method, url, headers=headers, verify=emu.ca_bundle, timeout=timeout,
                            **kwargs)





def test_rate_limit_is_per_principal_with_retry_after(make: Callable[..., Emulator]) -> None:
    emu = make(rate_limit=3, rate_window_seconds=300)
    assert [call(emu).status_code for _ in range(3)] == [200, 200, 200]
    throttled = call(emu)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    error = throttled.json()["error"]
    assert error["code"] and "CorrelationId:" in error["message"]
    assert call(emu, user="other@lmints.io").status_code == 200  # another principal
    emu.clock.advance(300)  # the sliding window moves on the emulator clock
    assert call(emu).status_code == 200


def test_app_principals_are_limited_by_app_id(make: Callable[..., Emulator]) -> None:
    emu = make(rate_limit=1)
    assert call(emu, user=APP).status_code == 200
    assert call(emu, user=APP).status_code == 429
    assert call(emu).status_code == 200  # a user of the same app is another principal
    app_oid = emu.entra.validate_token(emu.entra.issue_access_token(CLIENT_ID, "lmints.io"))["oid"]
    assert [r.principal == app_oid for r in emu.requests] == [True, True, False]


@contextmanager
def held(emu: Emulator, count: int, until: Callable[[], bool]
         ) -> Iterator[tuple[list[Future], ThreadPoolExecutor]]:
    """`count` calls of the admin user held at the stand-in BC's closed gate, once `until()` holds;
    the gate opens when the block ends, and the calls finish before the `with` does."""
    emu.bc.gate.clear()
    with ThreadPoolExecutor(count + 1) as pool:
        try:
            calls = [pool.submit(call, emu, timeout=60) for _ in range(count)]
            wait_until(until)
            yield calls, pool
        finally:
            emu.bc.gate.set()


def statuses(calls: list[Future]) -> list[int]:
    return sorted(c.result().status_code for c in calls)


def test_concurrency_is_capped_and_the_rest_queue(make: Callable[..., Emulator]) -> None:
    emu = make(max_concurrent=2)
    with held(emu, 6, lambda: emu.in_flight() == {"processing": 2, "queued": 4}) as (calls, _):
        assert emu.bc.active == 2
    assert statuses(calls) == [200] * 6 and emu.bc.max_active == 2


def test_queue_wait_beyond_the_limit_is_503_with_retry_after(make: Callable[..., Emulator]) -> None:
    emu = make(max_concurrent=1, queue_timeout_seconds=0.2)
    with held(emu, 1, lambda: emu.bc.active == 1) as (calls, _):
        second = call(emu)
        assert second.status_code == 503 and second.headers["Retry-After"] == "1"
    assert statuses(calls) == [200]


def test_full_queue_is_429(make: Callable[..., Emulator]) -> None:
    emu = make(max_concurrent=1, max_queued=0)
    with held(emu, 1, lambda: emu.bc.active == 1) as (calls, _):
        assert call(emu).status_code == 429
    assert statuses(calls) == [200]


def test_overshoot_setting_answers_429_at_once_beyond_the_fifth_in_flight(
        make: Callable[..., Emulator]) -> None:
    emu = make(reject_over_concurrency=True)
    with held(emu, 5, lambda: emu.bc.active == 5) as (calls, pool):
        refused = call(emu)  # answered while the five are still held: no queueing
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        calls.append(pool.submit(call, emu, user="other@lmints.io", timeout=60))  # its own budget
        wait_until(lambda: emu.in_flight() == {"processing": 6, "queued": 0})
    assert statuses(calls) == [200] * 6 and emu.in_flight() == {"processing": 0, "queued": 0}
    overshoot = [r for r in emu.requests if r.in_flight > 5]
    assert [(r.status, r.in_flight) for r in overshoot] == [(429, 6)]


def test_request_log_counts_what_was_in_flight_when_queueing(make: Callable[..., Emulator]) -> None:
    emu = make(max_concurrent=2)
    with held(emu, 4, lambda: emu.in_flight() == {"processing": 2, "queued": 2}) as (calls, _):
        pass
    assert statuses(calls) == [200] * 4
    assert sorted(r.in_flight for r in emu.requests) == [1, 2, 3, 4]
    assert call(emu).status_code == 200 and emu.requests[-1].in_flight == 1


def test_limits_are_read_and_changed_through_the_admin_api(make: Callable[..., Emulator]) -> None:
    emu = make()
    url = f"{emu.url}/_emulator/limits"
    limits = requests.get(url, verify=emu.ca_bundle, timeout=10).json()
    assert (limits["max_concurrent"], limits["reject_over_concurrency"]) == (5, False)
    assert limits["in_flight"] == {"processing": 0, "queued": 0}
    changed = requests.post(url, json={"reject_over_concurrency": True, "max_concurrent": 1},
                            verify=emu.ca_bundle, timeout=10)
    assert changed.json()["reject_over_concurrency"] is True and emu.config.max_concurrent == 1
    for bad in ({"colour": 1}, {"reject_over_concurrency": "yes"}):
        assert requests.post(url, json=bad, verify=emu.ca_bundle, timeout=10).status_code == 400
    logged = requests.get(f"{emu.url}/_emulator/requests", verify=emu.ca_bundle, timeout=10)
    assert logged.json() == []
    call(emu)
    [entry] = requests.get(f"{emu.url}/_emulator/requests", verify=emu.ca_bundle, timeout=10).json()
    assert entry["in_flight"] == 1 and entry["principal"] == emu.requests[0].principal


def test_unauthenticated_requests_pass_to_bc_without_accounting(make: Callable[..., Emulator]) -> None:
    emu = make(rate_limit=1)
    assert [call(emu, user=None).status_code for _ in range(3)] == [401, 401, 401]
    assert [r.principal for r in emu.requests] == [None, None, None]


def test_latency_is_injected(make: Callable[..., Emulator]) -> None:
    emu = make(latency_seconds=5)
    with pytest.raises(requests.exceptions.ReadTimeout):  # the answer cannot come before 5 s
        call(emu, timeout=0.5)
    emu.faults.configure({"latency_seconds": 0})
    assert emu.faults.latency_seconds == 0 and call(emu).status_code == 200


def test_error_before_does_not_reach_bc(make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(method="POST", path_regex=r".*/salesOrders$", action="error_before",
                        status=503, count=1)
    first = call(emu, method="POST", path="/companies(1)/salesOrders", json={})
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert "CorrelationId:" in first.json()["error"]["message"]
    assert emu.bc.committed == []
    assert call(emu, method="POST", path="/companies(1)/salesOrders", json={}).status_code == 200
    assert len(emu.bc.committed) == 1  # count=1: the rule is used up


def test_rules_match_method_and_path(make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(method="POST", path_regex=r".*/salesOrders$", action="error_before",
                        count=None)
    assert call(emu, path="/companies(1)/salesOrders").status_code == 200  # GET
    assert call(emu, method="POST", path="/companies(1)/customers").status_code == 200
    assert call(emu, method="POST", path="/companies(1)/salesOrders").status_code == 503
    assert call(emu, method="POST", path="/companies(1)/salesOrders").status_code == 503


def test_error_after_commit_writes_then_fails(make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(action="error_after_commit", status=500, retry_after=None)
    resp = call(emu, method="POST", path="/companies(1)/salesOrders", json={})
    assert resp.status_code == 500 and "Retry-After" not in resp.headers
    assert emu.bc.committed == ["/v2.0/lmints.io/production/api/v2.0/companies(1)/salesOrders"]


def test_timeout_after_commit_drops_the_connection(make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(method="POST", path_regex="salesOrders$", action="timeout_after_commit",
                        hold_seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(emu, method="POST", path="/companies(1)/salesOrders", json={}, timeout=0.4)
    wait_until(lambda: bool(emu.requests))  # logged once the hold ends
    assert len(emu.bc.committed) == 1  # the write happened although the client saw a timeout
    entry = emu.requests[-1]
    assert entry.status is None and entry.fault == "timeout_after_commit"
    assert call(emu).status_code == 200  # the server is fine afterwards


def test_timeout_after_commit_can_answer_504(make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(action="timeout_after_commit", hold_seconds=0.2, then="504")
    resp = call(emu, method="POST", path="/companies(1)/salesOrders", json={})
    assert resp.status_code == 504 and emu.requests[-1].fault == "timeout_after_commit"
    assert len(emu.bc.committed) == 1


def test_dropped_connection_reaches_a_client_without_timeout_as_connection_error(
        make: Callable[..., Emulator]) -> None:
    emu = make()
    emu.faults.add_rule(action="timeout_after_commit", hold_seconds=0.1)
    with pytest.raises(requests.exceptions.ConnectionError):
        call(emu, method="POST", path="/companies(1)/salesOrders", json={})


def test_random_faults_follow_the_seed(make: Callable[..., Emulator]) -> None:
    emu = make()

    def run() -> list[int]:
        emu.faults.configure({"rate": 0.5, "seed": 42, "retry_after": 2})
        return [call(emu).status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert {429, 503} & set(first) and 200 in first
    faulted = [r for r in emu.requests if r.fault == "random"]
    assert faulted and all(r.status in (429, 503) for r in faulted)
    emu.faults.clear()
    assert {call(emu).status_code for _ in range(5)} == {200}


def test_request_log_records_every_bc_request(make: Callable[..., Emulator]) -> None:
    emu = make(rate_limit=2)
    call(emu, path="/companies", params={"$top": "1"})
    call(emu, method="POST", path="/companies(1)/items", json={})
    call(emu)
    log = emu.requests
    assert [(r.method, r.status) for r in log] == [("GET", 200), ("POST", 200), ("GET", 429)]
    assert log[0].path == "/v2.0/lmints.io/production/api/v2.0/companies"
    assert log[0].query == "%24top=1"
    oid = emu.entra.validate_token(emu.entra.issue_access_token(CLIENT_ID, "lmints.io",
                                                                "admin@lmints.io"))["oid"]
    assert {r.principal for r in log} == {oid}
    assert log[0].time <= log[2].time
    emu.clear_requests()
    assert emu.requests == []


def test_fault_configuration_is_validated() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.configure({"rules": [{"action": "explode"}]})
    with pytest.raises(ValueError):
        faults.configure({"statuses": [500]})
    with pytest.raises(ValueError):
        faults.configure({"bogus": 1})
    with pytest.raises(TypeError):
        faults.configure({"rules": [{"action": "error_before", "colour": "red"}]})
    faults.configure({"rules": [{"action": "error_before", "count": 2}], "latency_seconds": 0.5})
    assert faults.to_dict()["rules"][0]["count"] == 2 and faults.latency_seconds == 0.5
    assert faults.take_rule("GET", "/x") is faults.take_rule("GET", "/y")
    assert faults.take_rule("GET", "/z") is None
    assert isinstance(faults.add_rule(FaultRule("error_after_commit")), FaultRule)


def test_latency_counts_from_the_requests_arrival_not_on_top_of_the_servers_own_time() -> None:
    """The injected latency is BC's response time: time the server already spent on a request
    (reading it, checking its token) is part of it, so a request that arrived a latency ago is
    answered without a further wait."""
    from devtools.emulator.clock import Clock
    from devtools.emulator.limits import ARRIVED, LimitsMiddleware, RequestLog

    faults = Faults(latency_seconds=60)
    limits = LimitsMiddleware(StandInBC(None, None, lambda token: {}), EmulatorConfig(), Clock(),
                              lambda token: {}, faults, RequestLog())
    answered: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v2.0/x", ARRIVED: time.monotonic() - 60}
    worker = threading.Thread(target=lambda: limits(environ, lambda status, headers: answered.append(status)),
                              daemon=True)
    worker.start()
    worker.join(20)  # a request that waited the latency again would still be waiting
    faults.release()
    assert answered and answered[0].startswith("401")


def test_waits_aim_early_by_how_late_recent_ones_woke_so_answers_leave_a_latency_after_arrival() -> None:
    """A loaded machine wakes a sleeping thread late: the emulator's answer still leaves a latency
    after its request arrived (BC's response time, not that plus the emulator's own scheduling), as
    its waits aim early by how late recent ones woke up."""
    now = [0.0]

    class LateWakes:  # every wait wakes 4 ms after it was due
        def wait(self, seconds: float) -> bool:
            now[0] += seconds + 0.004
            return False

    faults = Faults(latency_seconds=0.1, clock=lambda: now[0])
    faults._released = LateWakes()  # type: ignore[assignment]
    late = []
    for _ in range(100):
        arrived = now[0]
        faults.sleep_until(arrived + 0.1)
        late.append(now[0] - (arrived + 0.1))
    assert late[0] == pytest.approx(0.004)  # nothing learnt yet
    assert 0 <= late[-1] < 0.0005 and min(late) > -1e-9  # on time, and never answered early
