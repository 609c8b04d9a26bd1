"""Connections declared in the table `bcconnectiondefs`, picked up by the running app without a restart
(real Azurite, the emulator, the real app on the local host): added, changed, removed (its BC
subscriptions deleted, its queued work refused to poison with the reason), invalid rows refused alone."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connector.connection_table import (
    INVALID,
    PARTITION,
    LiveConnections,
    list_rows,
    mark_removing,
    put_connection,
    put_connections,
)
from connector.settings import TABLE_CONNECTION_DEFS, SettingsError, UnknownConnection, load_settings
from connector.signing import seal_json
from connector.storage import Storage
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID
from tests.auth.browser import authorize, post_callback, start_login
from tests.orders.support import SEED_EXAMPLE, OrderQueues, new_key
from tests.queue_drain import drain_texts
from tests.waiting import wait_until
from tests.webhooks.scenario import EmulatedBC

IDLE_SECONDS = 90.0
KV_REF = "@Microsoft.KeyVault(SecretUri=https://kv-test.vault.azure.net/secrets/usa-secret/)"
KV_SHOP = "@Microsoft.KeyVault(VaultName=kv-test;SecretName=shop-bc)"


@pytest.fixture
def host(local_host: Callable[..., Any]) -> Callable[..., Any]:
    def start(**overrides: str) -> Any:
        return local_host(**({"TIMER_FAN_OUT_MIN_CONNECTIONS": "1", "CONNECTIONS_REFRESH_SECONDS": "1"}
                             | overrides))

    return start


def runtime() -> Any:
    from connector.runtime import get_runtime

    return get_runtime()


def events(queue: str) -> list[dict[str, Any]]:
    return [json.loads(t) for t in drain_texts(runtime().storage.queue(queue))]


def test_a_row_added_while_the_app_runs_is_used_at_once_changed_gets_a_new_client_and_removed_is_cleaned_up(
        host, emulator, azurite):
    h = host()
    storage = runtime().storage
    assert list(runtime().settings.connections) == ["default"]

    # added: a message for it finds it (a miss reads its row), the timers include it
    put_connection(storage, "usa", {"BC_COMPANY": CRONUS_USA_ID})  # the rest from the plain app settings
    queues = OrderQueues(azurite.connection_string)
    key = new_key()
    queues.send([SEED_EXAMPLE | {"connection": "usa", "externalDocumentNumber": key}])
    h.wait_idle(IDLE_SECONDS)
    [result] = queues.results()
    assert result["status"] == "created", result
    h.fire_timer("renew_subscriptions")  # fans out: one unit per connection
    h.wait_idle(IDLE_SECONDS)
    subs = {r["subscription_id"]: r["PartitionKey"]
            for r in storage.table("bcsubscriptions").list_entities() if r.get("subscription_id")}
    usa_subs = {s for s, conn in subs.items() if conn == "usa"}
    assert usa_subs and usa_subs <= set(emulator.bc.webhooks.subscriptions)
    usa = EmulatedBC(emulator, CRONUS_USA_ID)  # BC's webhook for it is processed
    item = usa.create_item()
    usa.flush()
    h.wait_idle(IDLE_SECONDS)
    created = wait_until(lambda: [e for e in events("bc-items") if e["data"].get("number") == item["number"]],
                         60, "the item's event")
    assert created[0]["source"] == f"bc-connector/usa/{CRONUS_USA_ID}"
    status = requests.get(f"{h.url}/api/status", timeout=60).json()  # the status page lists it
    assert {c["name"] for c in status["connections"]} == {"default", "usa"}

    # changed: the next refresh gives it new settings and a new BC client
    client = runtime().bc("usa")
    assert [r for r in storage.table("bctokens").list_entities() if r["PartitionKey"] == "usa"]
    put_connection(storage, "usa", {"BC_COMPANY": CRONUS_USA_ID, "PULL_ITEM_VARIANTS": "false"})
    wait_until(lambda: runtime().settings.connection("usa").pull_item_variants is False, 30, "change seen")
    assert runtime().bc("usa") is not client
    assert runtime().bc("default") is runtime().bc("default")

    # removed: its subscriptions go from BC, then its row; its queued work is refused with the reason
    unit = seal_json(runtime().fanout._signer, json.dumps({"task": "sweep", "connection": "usa",
                                                           "queuedAt": 1.0}))
    assert mark_removing(storage, "usa")

    def deleted_in_bc() -> bool:
        len(runtime().settings.connections)  # any look-up refreshes when due (an idle app reads nothing)
        return not (usa_subs & set(emulator.bc.webhooks.subscriptions))

    wait_until(deleted_in_bc, 60, "BC subscriptions deleted")
    wait_until(lambda: list_rows(storage) == [], 60, "the removing row deleted")
    assert not [r for r in storage.table("bcsubscriptions").list_entities() if r["PartitionKey"] == "usa"]
    assert not [r for r in storage.table("bctokens").list_entities() if r["PartitionKey"] == "usa"]
    assert {s for s, c in subs.items() if c == "default"} <= set(emulator.bc.webhooks.subscriptions)
    with pytest.raises(UnknownConnection, match="no longer configured"):
        runtime().settings.connection("usa")
    late_note = {"subscriptionId": sorted(usa_subs)[0], "clientState": "x", "changeType": "created",
                 "lastModifiedDateTime": "2026-01-01T00:00:00Z",
                 "resource": f"api/v2.0/companies({CRONUS_USA_ID})/items({item['id']})"}
    answer = requests.post(f"{h.url}/api/webhooks/bc", json={"value": [late_note]}, timeout=30)
    assert answer.status_code == 202  # never a 4xx to BC, even for a connection gone
    storage.queue("bc-connection-work").send_message(unit)
    late = SEED_EXAMPLE | {"connection": "usa", "externalDocumentNumber": new_key()}
    queues.send([late])
    h.wait_idle(IDLE_SECONDS)
    [poisoned] = [json.loads(t) for t in drain_texts(storage.queue("bc-connection-work-poison"))]
    assert "connection 'usa' is no longer configured" in poisoned["reason"]
    [refused] = queues.results()
    assert refused["status"] == "failed" and "no longer configured" in refused["error"]["message"]
    kept = [json.loads(t)["externalDocumentNumber"] for t in queues.poison()]
    assert kept == [late["externalDocumentNumber"]]
    assert list(runtime().settings.connections) == ["default"]


def test_a_code_flow_connection_added_as_a_row_signs_in_without_a_restart(host, emulator):
    h = host()
    put_connection(runtime().storage, "shop", {"BC_GRANT_TYPE": "authorization_code",
                                               "BC_COMPANY": CRONUS_UK_ID})
    page = post_callback(authorize(emulator, start_login(h, "shop")))
    assert page.status_code == 200, page.text
    assert runtime().bc("shop").get(f"companies({CRONUS_UK_ID})")["id"] == CRONUS_UK_ID  # as the user
    entity = {"PartitionKey": PARTITION, "RowKey": "leaky", "BC_CLIENT_SECRET": "in-the-clear"}
    runtime().storage.table(TABLE_CONNECTION_DEFS).upsert_entity(entity)
    wait_until(lambda: "leaky" in runtime().connections.errors, 30, "the row refused")
    status = requests.get(f"{h.url}/api/status", timeout=60).json()
    assert "plaintext secret" in status["connection_table"]["invalid"]["leaky"]
    assert "in-the-clear" not in json.dumps(status)
    page = requests.get(f"{h.url}/api/status", headers={"Accept": "text/html"}, timeout=60).text
    assert "invalid rows" in page and "in-the-clear" not in page


def test_a_plaintext_secret_makes_only_its_row_invalid_and_says_so(runtime_env):
    rt, storage = runtime_env
    put_connections(storage, {"good": {"BC_COMPANY": CRONUS_UK_ID}})
    entity = {"PartitionKey": PARTITION, "RowKey": "leaky", "BC_CLIENT_SECRET": "s3cr3t-in-the-table"}
    storage.table(TABLE_CONNECTION_DEFS).upsert_entity(entity)  # written past the CLI's check
    rt.connections.refresh()
    assert rt.settings.connection("good").company == CRONUS_UK_ID
    with pytest.raises(UnknownConnection, match="plaintext secret") as refused:
        rt.settings.connection("leaky")
    assert "s3cr3t" not in str(refused.value)
    assert sorted(rt.settings.connections) == ["default", "good"]
    row = storage.table(TABLE_CONNECTION_DEFS).get_entity(PARTITION, "leaky")
    assert "plaintext secret" in row[INVALID] and "s3cr3t" not in row[INVALID]
    assert rt.connections.errors.keys() == {"leaky"}


def test_the_cli_helpers_refuse_a_plaintext_secret_and_bad_names(runtime_env):
    _, storage = runtime_env
    with pytest.raises(SettingsError, match="plaintext secret"):
        put_connection(storage, "emea", {"BC_CLIENT_SECRET": "plain"})
    with pytest.raises(SettingsError, match="not a valid connection name"):
        put_connection(storage, "EMEA!", {})
    put_connection(storage, "emea", {"BC_CLIENT_SECRET": KV_REF})  # a reference is fine
    assert [r["RowKey"] for r in list_rows(storage)] == ["emea"]


def test_a_row_with_the_name_of_an_app_setting_connection_loses_and_says_why(runtime_env):
    rt, storage = runtime_env
    put_connection(storage, "default", {"BC_COMPANY": CRONUS_USA_ID})
    rt.connections.refresh()
    assert rt.settings.connection("default").company == ""  # the app settings win
    assert "declared in BC_CONNECTIONS too" in rt.connections.errors["default"]


def test_an_invalid_setting_in_a_row_is_named_like_an_app_setting_would_be(runtime_env):
    rt, storage = runtime_env
    put_connection(storage, "bad", {"BC_GRANT_TYPE": "password"})
    with pytest.raises(UnknownConnection, match="BC_GRANT_TYPE must be one of"):
        rt.settings.connection("bad")
    put_connection(storage, "odd", {"BC_TENANTS": "x"})
    with pytest.raises(UnknownConnection, match="BC_TENANTS is no per-connection setting"):
        rt.settings.connection("odd")


def test_a_thousand_rows_load_in_one_read(runtime_env):
    rt, storage = runtime_env
    put_connections(storage, {f"c{i:04d}": {"BC_COMPANY": CRONUS_UK_ID} for i in range(1000)})
    rt.connections.refresh()
    assert len(rt.settings.connections) == 1001
    assert rt.settings.connection("c0999").company == CRONUS_UK_ID


def test_the_catalogue_without_storage_rows_keeps_the_app_setting_connections(azurite, connector_env):
    connector_env()  # storage emptied
    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                              "BC_CONNECTIONS": "default,emea",
                              "AzureWebJobsStorage": azurite.connection_string})
    live = LiveConnections(settings, Storage(settings.storage))
    assert list(live) == ["default", "emea"] and live["emea"].tenant == "t"
    with pytest.raises(KeyError):
        live["nowhere"]
    assert live.get("nowhere") is None


@pytest.fixture
def runtime_env(connector_env: Callable[..., dict[str, str]]) -> tuple[Any, Any]:
    connector_env(CONNECTIONS_REFRESH_SECONDS="3600")
    rt = runtime()
    return rt, rt.storage


@pytest.fixture
def vault_env(connector_env: Callable[..., dict[str, str]], emulator: Any) -> Any:
    """The runtime with Key Vault references read from the emulator, as the managed identity."""
    from devtools.emulator.config import IDENTITY_HEADER

    connector_env(CONNECTIONS_REFRESH_SECONDS="3600", KEY_VAULT_HOST=emulator.url,
                  IDENTITY_ENDPOINT=f"{emulator.url}/msi/token", IDENTITY_HEADER=IDENTITY_HEADER)
    return runtime()


def test_a_key_vault_reference_is_read_with_the_identity_and_a_rotation_is_picked_up_on_refusal(
        vault_env, emulator):
    from tests.conftest import CLIENT_ID, CLIENT_SECRET

    rt = vault_env
    emulator.keyvault.set_secret("kv-test", "shop-bc", CLIENT_SECRET)
    put_connection(rt.storage, "shop", {"BC_COMPANY": CRONUS_UK_ID, "BC_CLIENT_SECRET": KV_SHOP})
    assert rt.settings.connection("shop").client_secret == CLIENT_SECRET  # read through the SDK
    assert rt.bc("shop").get(f"companies({CRONUS_UK_ID})")["id"] == CRONUS_UK_ID
    row = rt.storage.table(TABLE_CONNECTION_DEFS).get_entity(PARTITION, "shop")
    assert row["BC_CLIENT_SECRET"] == KV_SHOP  # the table only ever holds the reference

    app = next(a for a in emulator.config.clients if a.client_id == CLIENT_ID)
    try:  # rotation: the app registration takes a new secret, Key Vault gets it as a new version
        app.client_secret = "rotated-secret"
        emulator.keyvault.set_secret("kv-test", "shop-bc", "rotated-secret")
        token = rt.tokens.access_token("shop", force_refresh=True)  # Entra refuses the cached one first
        assert token and rt.settings.connection("shop").client_secret == "rotated-secret"
        assert rt.bc("shop").get(f"companies({CRONUS_UK_ID})")["id"] == CRONUS_UK_ID
    finally:
        app.client_secret = CLIENT_SECRET


def test_an_unreadable_reference_makes_its_row_invalid_with_the_reason(vault_env, emulator):
    rt = vault_env
    put_connection(rt.storage, "lost", {"BC_CLIENT_SECRET": KV_REF})  # no such secret in the vault
    with pytest.raises(UnknownConnection, match="kv-test/usa-secret: no such secret"):
        rt.settings.connection("lost")


def test_rows_are_read_again_in_the_background_after_the_interval_and_unchanged_ones_keep_their_object(
        connector_env, azurite):
    connector_env()  # storage emptied
    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                              "AzureWebJobsStorage": azurite.connection_string})
    storage = Storage(settings.storage)
    now = [0.0]
    live = LiveConnections(settings, storage, clock=lambda: now[0])
    put_connection(storage, "a", {"BC_COMPANY": "one"})
    first = live["a"]
    assert live.refreshes == 1
    put_connection(storage, "a", {"BC_COMPANY": "one"})  # written again, unchanged
    put_connection(storage, "b", {"BC_COMPANY": "two"})
    assert "b" in live and live.refreshes == 1  # a miss reads its row only
    now[0] = 61.0
    list(live)  # due: read in the background
    wait_until(lambda: live.refreshes == 2, 30, "the second read")
    assert live["a"] is first
    put_connection(storage, "a", {"BC_COMPANY": "three"})
    now[0] = 122.0
    list(live)
    wait_until(lambda: live.refreshes == 3, 30, "the third read")
    assert live["a"] is not first and live["a"].company == "three"
    with pytest.raises(KeyError):
        live["no such/name"]  # not even looked up
    live.close()
