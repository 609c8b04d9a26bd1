"""Deleting a connection's subscriptions unhooks it from BC: it takes the master key (admin level,
issue 11 point 7), while creating or renewing them stays at function level."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from tests.webhooks.scenario import QUIET_TIMERS

KEYS = {"LOCAL_HOST_REQUIRE_KEYS": "true", "LOCAL_HOST_FUNCTION_KEY": "fn-key",
        "LOCAL_HOST_MASTER_KEY": "master-key"}


def test_deleting_subscriptions_needs_the_master_key(local_host: Callable[..., Any]) -> None:
    host = local_host(**KEYS, **QUIET_TIMERS)
    url = f"{host.url}/api/connections/default/subscriptions"
    assert requests.post(url, params={"code": "fn-key"}, timeout=60).status_code == 200
    assert requests.delete(url, timeout=60).status_code == 401
    assert requests.delete(url, params={"code": "fn-key"}, timeout=60).status_code == 401
    deleted = requests.delete(url, headers={"x-functions-key": "master-key"}, timeout=60)
    assert deleted.status_code == 200 and deleted.json()["deleted"]
