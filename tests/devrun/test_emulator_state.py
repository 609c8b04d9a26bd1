"""The emulator keeps its state in a file: a restarted emulator is BC that stayed up (over real https)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.emulator import Emulator, EmulatorConfig
from devtools.emulator.seed import CRONUS_UK_ID
from devtools.emulator.state import StateError
from tests.waiting import wait_until

TENANT = "lmints.io"
CLIENT = EmulatorConfig().clients[0]
ORDER = {"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP"}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Start an emulator keeping its state in `tmp_path/state.json` (or `state_file=`)."""
    started: list[Emulator] = []

    def make(**config: Any) -> Emulator:
        config.setdefault("state_file", str(tmp_path / "state.json"))
        config.setdefault("webhook_debounce_seconds", 0.1)
        emulator = Emulator(EmulatorConfig(**config)).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


class BC:
    """A client of one emulator's BC API (CRONUS UK, production) with a client-credentials token."""

    def __init__(self, emulator: Emulator, token: str | None = None) -> None:
        self.emulator = emulator
        self.base = f"{emulator.bc_base(TENANT, 'production')}/companies({CRONUS_UK_ID})"
        self.token = token or self.new_token()

    def new_token(self) -> str:
        form = {"grant_type": "client_credentials", "client_id": CLIENT.client_id,
                "client_secret": CLIENT.client_secret, "scope": "https://api.businesscentral.dynamics.com/.default"}
        response = requests.post(f"{self.emulator.authority(TENANT)}/oauth2/v2.0/token", data=form,
                                 verify=self.emulator.ca_bundle, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def call(self, method: str, path: str, body: Any = None, base: str | None = None) -> requests.Response:
        return requests.request(method, f"{base or self.base}/{path}", json=body, timeout=30,
                                headers={"Authorization": f"Bearer {self.token}"},
                                verify=self.emulator.ca_bundle)

    def create_order(self, key: str) -> dict[str, Any]:
        response = self.call("POST", "salesOrders", ORDER | {"externalDocumentNumber": key})
        assert response.status_code == 201, response.text
        return response.json()

    def subscribe(self, url: str, entity_set: str = "items") -> dict[str, Any]:
        body = {"notificationUrl": url, "resource": f"/api/v2.0/companies({CRONUS_UK_ID})/{entity_set}",
                "clientState": "state-1"}
        response = self.call("POST", "subscriptions", body, base=self.emulator.bc_base(TENANT, "production"))
        assert response.status_code == 201, response.text
        return response.json()

    def subscriptions(self) -> list[dict[str, Any]]:
        response = self.call("GET", "subscriptions", base=self.emulator.bc_base(TENANT, "production"))
        assert response.status_code == 200, response.text
        return response.json()["value"]


def admin(emulator: Emulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emulator.url}/_emulator/{path}", json=body, timeout=30,
                            verify=emulator.ca_bundle)


def test_a_restarted_emulator_keeps_orders_number_series_subscriptions_tokens_and_clock(start, receiver):
    first = start()
    bc = BC(first)
    order = bc.create_order("WEB-1")
    subscription = bc.subscribe(receiver.url)
    admin(first, "POST", "clock", {"advance_seconds": 600})
    moved_clock = admin(first, "GET", "clock").json()["now"]
    first.stop()

    second = start()
    again = BC(second, token=bc.token)  # the token issued before the restart is still valid
    orders = again.call("GET", "salesOrders?$filter=externalDocumentNumber eq 'WEB-1'").json()["value"]
    assert [(o["id"], o["number"], o["@odata.etag"]) for o in orders] == [
        (order["id"], order["number"], order["@odata.etag"])]
    following = again.create_order("WEB-2")
    assert following["number"] > order["number"]  # the number series went on, no number repeats
    assert [s["subscriptionId"] for s in again.subscriptions()] == [subscription["subscriptionId"]]
    assert admin(second, "GET", "clock").json()["now"] >= moved_clock

    item = admin(second, "POST", f"bc/{TENANT}/production/{CRONUS_UK_ID}/items",
                 {"number": "AFTER-RESTART", "displayName": "Made after the restart"}).json()
    note = receiver.element(item["id"])
    assert (note["subscriptionId"], note["changeType"]) == (subscription["subscriptionId"], "created")


def test_business_event_subscriptions_survive_a_restart_and_still_notify(start, receiver):
    first = start()
    bc = BC(first)
    def runtime(emulator: Emulator) -> str:
        return emulator.bc_base(TENANT, "production").replace("/api/v2.0", "/api/microsoft/runtime/v1.0")

    made = bc.call("POST", "externaleventsubscriptions", {
        "companyId": CRONUS_UK_ID, "eventName": "SalesShipmentPosted", "notificationUrl": receiver.url,
        "clientState": "be-1"}, base=runtime(first))
    assert made.status_code == 201, made.text
    first.stop()

    second = start()
    again = BC(second, token=bc.token)
    listed = again.call("GET", "externaleventsubscriptions", base=runtime(second)).json()["value"]
    assert [(s["id"], s["subscriptionState"]) for s in listed] == [(made.json()["id"], "Active")]
    admin(second, "POST", f"bc/{TENANT}/production/{CRONUS_UK_ID}/salesShipments",
          {"customerNumber": "GL00000008", "lines": [{"itemNumber": "1896-S", "quantity": 1}]})
    [note] = receiver.wait(1)
    assert (note["eventName"], note["clientState"]) == ("SalesShipmentPosted", "be-1")


def test_what_a_write_request_was_answered_for_is_already_on_disk(start, receiver, tmp_path):
    """A SIGKILLed emulator loses nothing it acknowledged: copy the file while it still runs."""
    running = start()
    bc = BC(running)
    order = bc.create_order("WEB-KILLED")
    subscription = bc.subscribe(receiver.url)
    shutil.copyfile(tmp_path / "state.json", tmp_path / "as-killed.json")

    restored = BC(start(state_file=str(tmp_path / "as-killed.json")), token=bc.token)
    assert [s["subscriptionId"] for s in restored.subscriptions()] == [subscription["subscriptionId"]]
    assert restored.call("GET", f"salesOrders({order['id']})").json()["number"] == order["number"]


def test_notifications_pending_at_shutdown_are_delivered_after_the_restart(start, receiver):
    first = start(webhook_debounce_seconds=3600)
    BC(first).subscribe(receiver.url)
    item = admin(first, "POST", f"bc/{TENANT}/production/{CRONUS_UK_ID}/items",
                 {"number": "PENDING-1", "displayName": "Changed just before the stop"}).json()
    assert [p["id"] for p in admin(first, "GET", "bc/webhooks/pending").json()["value"]] == [item["id"]]
    first.stop()
    assert receiver.notifications == []

    start(webhook_debounce_seconds=0.1)
    assert receiver.element(item["id"])["changeType"] == "created"


def test_a_refresh_token_issued_before_the_restart_still_redeems(start):
    first = start()
    token = first.entra._new_refresh_token(CLIENT.client_id, first.entra.tenant_id(TENANT), "admin@lmints.io",
                                           frozenset({"https://api.businesscentral.dynamics.com/.default"}))
    first.stop()

    second = start()
    form = {"grant_type": "refresh_token", "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret, "refresh_token": token, "scope": "https://api.businesscentral.dynamics.com/.default"}
    response = requests.post(f"{second.authority(TENANT)}/oauth2/v2.0/token", data=form,
                             verify=second.ca_bundle, timeout=30)
    assert response.status_code == 200, response.text
    second.entra.validate_token(response.json()["access_token"])


def test_an_unreadable_state_file_is_a_clear_error_and_stays_as_it_was(tmp_path):
    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "store": ')
    with pytest.raises(StateError) as error:
        Emulator(EmulatorConfig(port=0, state_file=str(state))).start()
    assert str(state) in str(error.value) and "make reset" in str(error.value)
    assert state.read_text() == '{"format": 1, "store": '


def test_without_a_state_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Emulator(EmulatorConfig(port=0)) as emulator:
        BC(emulator).create_order("WEB-MEMORY")
    assert list(tmp_path.iterdir()) == []


def test_a_state_too_large_to_save_per_request_is_saved_in_the_background_and_at_stop(
        start, receiver, tmp_path):
    emulator = start()
    emulator.state.sync_budget = -1.0  # as if every save took too long to make a request wait for it
    emulator.state.interval = 0.2
    bc = BC(emulator)
    order = bc.create_order("WEB-LATER")

    def saved_numbers() -> set[str]:
        state = json.loads((tmp_path / "state.json").read_text())
        return {row[2].get("number") for company in state["store"]["companies"]
                for row in company["sets"].get("salesOrders", [])}

    wait_until(lambda: order["number"] in saved_numbers(), timeout=30, what="the background save")
    subscription = bc.subscribe(receiver.url)  # a subscription change is saved before the answer anyway
    saved = json.loads((tmp_path / "state.json").read_text())["webhooks"]["subscriptions"]
    assert [s["id"] for s in saved] == [subscription["subscriptionId"]]
    last = bc.create_order("WEB-LAST")
    emulator.stop()
    assert last["number"] in saved_numbers()


def test_a_failed_save_does_not_fail_the_write_and_is_retried(start, tmp_path, caplog):
    emulator = start()
    emulator.state.interval = 0.2
    good = emulator.state.path
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    emulator.state.path = blocker / "state.json"  # cannot be written: its folder is a file

    order = BC(emulator).create_order("WEB-UNSAVED")  # answered 201 all the same

    assert "could not save the emulator state" in caplog.text
    emulator.state.path = good
    wait_until(lambda: "WEB-UNSAVED" in good.read_text(), timeout=30, what="the retried save")
    assert order["number"] in good.read_text()
