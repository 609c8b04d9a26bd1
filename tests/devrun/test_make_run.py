"""`make run` end to end through its own launcher (`python -m devtools.run` in a subprocess, free
ports, a temp data dir): it owns its processes, keeps BC in step with storage across restarts, moves
with its port and refuses a busy port before starting anything."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_SALES_ORDER_RESULTS, QUEUE_SALES_ORDERS
from devtools.azurite import running_in_group
from devtools.emulator.seed import CRONUS_UK_ID
from devtools.ports import port_is_free
from tests.devrun.launcher import Launcher
from tests.event_schemas import checked
from tests.queue_drain import drain_texts
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TENANT = "lmints.io"
ORDER = {"orderDate": "2023-09-01", "customerNumber": "GL00000008", "currencyCode": "GBP",
         "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"}


def start(launchers: list[Launcher], data_dir: Path, **options: Any) -> Launcher:
    launcher = Launcher(data_dir, **options)
    launchers.append(launcher)
    return launcher.start()


def emulator_admin(run: Launcher, path: str) -> Any:
    response = requests.get(f"{run.emulator_url}/_emulator/{path}", verify=run.ca_bundle, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def bc_subscriptions(run: Launcher) -> set[str]:
    """The ids of every subscription BC holds: webhooks and business events."""
    return ({s["subscriptionId"] for s in emulator_admin(run, "bc/subscriptions")["value"]}
            | {s["id"] for s in emulator_admin(run, "bc/businessevents/subscriptions")["value"]})


def subscribe(run: Launcher) -> dict[str, Any]:
    response = requests.post(f"{run.url}/api/connections/default/subscriptions", timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def send_order(run: Launcher, key: str) -> dict[str, Any]:
    """Put a sales order on the queue; the result the connector answers for it."""
    QueueClient.from_connection_string(run.storage, QUEUE_SALES_ORDERS).send_message(
        json.dumps(ORDER | {"externalDocumentNumber": key}))
    results = QueueClient.from_connection_string(run.storage, QUEUE_SALES_ORDER_RESULTS)
    seen: list[dict[str, Any]] = []

    def result() -> dict[str, Any] | None:
        seen.extend(json.loads(text) for text in drain_texts(results))
        return next((r for r in seen if r["externalDocumentNumber"] == key), None)

    return wait_until(result, timeout=120, what=f"a result for {key}")


def test_sighup_stops_every_child_including_azurite_and_reset_wipes_both_states(launchers, tmp_path):
    run = start(launchers, tmp_path)
    azurite = run.azurite_group
    assert running_in_group(azurite)  # the lifeline supervisor and node

    run.signal(signal.SIGHUP)  # the terminal was closed

    assert run.wait() == 0, run.output
    assert running_in_group(azurite) == []
    assert [p for p in run.ports if not port_is_free(p)] == []
    assert (tmp_path / "azurite").is_dir() and (tmp_path / "emulator" / "state.json").is_file()

    reset = Launcher(tmp_path, extra=("--reset-only",)).run()
    assert reset.returncode == 0, reset.stderr
    assert not (tmp_path / "azurite").exists() and not (tmp_path / "emulator").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_kill_stop_every_child_including_azurite(launchers, tmp_path, sig):
    run = start(launchers, tmp_path)
    azurite = run.azurite_group

    run.signal(sig)

    assert run.wait() == 0, run.output
    assert running_in_group(azurite) == []
    assert [p for p in run.ports if not port_is_free(p)] == []


def test_a_run_whose_storage_stopped_answering_still_stops_on_sigterm(launchers, tmp_path):
    """What a loaded machine does to a stop: queue polls and invocations hang in storage calls (the
    SDK retries for minutes); the host's stop is given up on after a while instead of waited for."""
    run = start(launchers, tmp_path)
    azurite = run.azurite_group
    os.killpg(azurite, signal.SIGSTOP)  # Azurite frozen: nothing it is asked answers

    run.signal(signal.SIGTERM)

    assert run.wait() == 0, run.output  # not held by the host's stop (it says when it gave up on it)
    assert running_in_group(azurite) == []


def test_a_killed_run_takes_azurite_along_and_a_restart_keeps_bc_in_step_with_storage(launchers, tmp_path):
    first = start(launchers, tmp_path)
    subscribed = subscribe(first)
    assert sorted(subscribed["created"]) == ["items", "salesInvoices", "salesShipments"], subscribed
    before = bc_subscriptions(first)
    created = send_order(first, "WEB-1")
    assert created["status"] == "created", created

    first.signal(signal.SIGKILL)  # no cleanup code runs at all
    first.wait()
    wait_until(lambda: not running_in_group(first.azurite_group), timeout=30,
               what="Azurite gone with its parent")

    second = start(launchers, tmp_path, port=first.port, emulator_port=first.emulator_port,
                   azurite_port=first.azurite_port)
    assert "state restored" in second.output
    # BC still has the subscriptions storage remembers, so /api/status and BC agree ...
    assert bc_subscriptions(second) == before
    status = requests.get(f"{second.url}/api/status", timeout=60).json()
    subs = status["connections"][0]["subscriptions"]  # webhooks, and business events (`event:<name>`)
    listed = {s["subscription_id"]: s["status"] for s in subs if not s["entity_set"].startswith("event:")}
    webhooks = {s["subscriptionId"] for s in emulator_admin(second, "bc/subscriptions")["value"]}
    assert listed == dict.fromkeys(webhooks, "active"), status
    events = {s["id"] for s in emulator_admin(second, "bc/businessevents/subscriptions")["value"]}
    assert {s["subscription_id"] for s in subs if s["entity_set"].startswith("event:")} == events, status
    # ... and webhooks keep delivering with no manual step.
    item = requests.post(f"{second.emulator_url}/_emulator/bc/{TENANT}/production/{CRONUS_UK_ID}/items",
                         json={"number": "AFTER-KILL", "displayName": "Created after the restart"},
                         verify=second.ca_bundle, timeout=30).json()
    items = QueueClient.from_connection_string(second.storage, "bc-items")
    seen: list[str] = []
    wait_until(lambda: seen.extend(drain_texts(items)) or any(item["id"] in text for text in seen),
               timeout=120, what="a bc.item.created event for the new item")

    # The order the key answers `duplicate` for is still in BC, and numbers go on without repeating.
    again = send_order(second, "WEB-1")
    assert (again["status"], again["salesOrderId"]) == ("duplicate", created["salesOrderId"]), again
    orders = emulator_admin(second, f"bc/{TENANT}/production/{CRONUS_UK_ID}/salesOrders")["value"]
    assert created["salesOrderId"] in {o["id"] for o in orders}
    following = send_order(second, "WEB-2")
    assert following["status"] == "created" and following["number"] > created["number"], following


def item_event(run: Launcher, seen: list[dict[str, Any]], event_type: str, item_id: str) -> dict[str, Any]:
    """The `event_type` event of item `item_id` from bc-items (waiting for it), schema-checked."""
    items = QueueClient.from_connection_string(run.storage, "bc-items")

    def found() -> dict[str, Any] | None:
        seen.extend(json.loads(text) for text in drain_texts(items))
        return next((e for e in seen if (e["type"], e["subject"]) == (event_type, item_id)), None)

    return checked(wait_until(found, timeout=120, what=f"{event_type} for item {item_id}"))


def annotations(value: Any) -> list[str]:
    """Every `@odata.*` key anywhere in `value`."""
    if isinstance(value, dict):
        own = [k for k in value if k.startswith("@odata.")]
        return own + [a for v in value.values() for a in annotations(v)]
    return [a for v in value for a in annotations(v)] if isinstance(value, list) else []


def test_an_item_arrives_after_the_short_default_debounce_in_the_shape_a_pull_gives_it(launchers, tmp_path):
    run = start(launchers, tmp_path)  # no DEBOUNCE: make run's default
    debounce = re.search(r"BC notifies \S+ ([\d.]+) s after a change \(real BC: about 30 s; make run "
                         r"DEBOUNCE=30\)", run.output)
    assert debounce and float(debounce.group(1)) <= 5, run.output
    assert subscribe(run)["failed"] == []
    item = requests.post(f"{run.emulator_url}/_emulator/bc/{TENANT}/production/{CRONUS_UK_ID}/items",
                         json={"number": "TWO-SHAPES", "displayName": "One shape",
                               "itemVariants": [{"code": "RED"}, {"code": "BLUE"}]},
                         verify=run.ca_bundle, timeout=30).json()
    seen: list[dict[str, Any]] = []
    created = item_event(run, seen, "bc.item.created", item["id"])

    pulled_now = requests.post(f"{run.url}/api/connections/default/pulls/items", timeout=60)
    assert pulled_now.status_code == 202, pulled_now.text
    pulled = item_event(run, seen, "bc.item.pulled", item["id"])

    assert annotations(created["data"]) == [] and annotations(pulled["data"]) == [], (created, pulled)
    assert {v["code"] for v in created["data"]["itemVariants"]} == {"RED", "BLUE"}
    assert created["data"] == pulled["data"]  # the same item, unchanged: one shape whatever the trigger


def test_the_port_option_moves_public_base_url_so_the_handshake_works(launchers, tmp_path):
    run = start(launchers, tmp_path)
    assert run.port != 7071
    assert f"BC notifies http://127.0.0.1:{run.port}/api/webhooks/bc" in run.output

    subscribed = subscribe(run)

    assert subscribed["failed"] == [] and len(subscribed["created"]) == 3, subscribed
    deliveries = emulator_admin(run, "bc/webhooks/deliveries")["value"]
    handshakes = [d for d in deliveries if d["kind"] == "handshake"]
    assert handshakes and {d["status"] for d in handshakes} == {200}, handshakes
    assert all(d["url"].startswith(f"{run.url}/api/webhooks/bc?") for d in handshakes), handshakes

    second = Launcher(tmp_path).run()  # the same data dir, other ports
    assert second.returncode == 1 and "another `make run`" in second.stderr, second.stderr


def test_several_instances_serve_behind_one_port_and_share_the_work(launchers, tmp_path):
    run = start(launchers, tmp_path, extra=("--instances", "2"))
    assert "2 Functions hosts behind a front door" in run.output

    assert send_order(run, "INSTANCES-1")["status"] == "created"
    subscribed = subscribe(run)
    assert subscribed["failed"] == [] and len(subscribed["created"]) == 3, subscribed
    logs = [p.read_text() for p in sorted((tmp_path / "hosts").glob("host-*.log"))]
    assert len(logs) == 2 and all("Local Functions host on" in log for log in logs)


@pytest.mark.parametrize(("which", "fix"), [
    ("port", "PORT="), ("emulator_port", "EMULATOR_PORT="), ("azurite_queue", "AZURITE_PORT="),
])
def test_a_busy_port_is_a_clear_error_before_anything_starts(tmp_path, which, fix):
    launcher = Launcher(tmp_path)
    port = launcher.azurite_port + 1 if which == "azurite_queue" else getattr(launcher, which)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        finished = launcher.run()

    assert finished.returncode == 2, finished.stdout + finished.stderr
    message = finished.stderr.strip().splitlines()[-1]
    assert f"port {port} " in message and "already in use" in message and fix in message, message
    assert f"pid {os.getpid()} " in message  # who holds it
    assert "Azurite on" not in finished.stdout and not (tmp_path / "azurite").exists()  # nothing started
