"""clientStates and validationTokens never reach the connector's logs, at any level: not when
subscriptions are created or renewed, not in the handshake, not when notifications (genuine or
forged) are received and processed."""
from __future__ import annotations

import logging
import uuid

import pytest
import requests

from connector.settings import QUEUE_ITEMS

pytestmark = pytest.mark.e2e

SETS = ["items", "salesInvoices", "salesShipments"]
# The connector and the libraries it logs through; not the dev tools' own HTTP clients and servers,
# which print the handshake URL (and its token) as BC's side and the Functions host would.
OURS = ("connector", "function_app", "azure", "msal")


def test_client_states_and_validation_tokens_never_appear_in_the_logs(scenario, make_emulator, caplog):
    caplog.set_level(logging.DEBUG)
    emu = make_emulator(subscription_ttl_seconds=30 * 3600)  # less than SUBSCRIPTION_RENEW_BEFORE_HOURS
    s = scenario(bc=emu)
    assert sorted(s.subscribe()["created"]) == SETS
    emu.clock.advance(3600)
    assert sorted(s.subscribe()["renewed"]) == SETS
    token = f"validation-{uuid.uuid4().hex}"
    assert requests.post(s.notification_url, params={"validationToken": token}, timeout=10).text == token
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))
    forged_state = f"forged-{uuid.uuid4().hex}"
    forged = dict(s.bc.notification_about(s.notification_url, item["id"]), clientState=forged_state)
    assert s.post({"value": [forged]}).status_code == 202
    s.host.wait_idle(30)
    secrets = {sub["clientState"] for sub in s.bc.subscriptions(s.notification_url)} | {token, forged_state}
    assert len(secrets) == 5
    ours = [r for r in caplog.records if r.name.split(".")[0] in OURS]
    assert any(r.name == "connector.webhooks.subscriptions" for r in ours)  # the logs were captured
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert [secret for secret in secrets if secret in logged] == []
