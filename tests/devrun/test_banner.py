"""`make run`'s banner says what runs and with which settings (issue 27, row 7): every function with
its route and auth level (as `func start` lists them), the settings file and each value that does not
come from it; with INSTANCES=N the hosts' logs reach the terminal, each line prefixed by its host."""
from __future__ import annotations

import re

import pytest
import requests

from tests.devrun.launcher import Launcher
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_banner_lists_functions_settings_and_instances_logs_reach_the_terminal(launchers, tmp_path):
    run = Launcher(tmp_path, extra=("--instances", "2"))
    launchers.append(run)
    run.start()
    banner = run.output
    for name, methods, route, auth in [("health", "GET", "health", "anonymous"),
                                       ("status", "GET", "status", "function"),
                                       ("sign_in_login", "GET", "connections/{connection}/login", "admin"),
                                       ("bc_webhook", "GET,POST", "webhooks/bc", "anonymous")]:
        assert re.search(rf"{name}\s+\[{methods}\] {re.escape(run.url)}/api/{re.escape(route)} \({auth}\)",
                         banner), (name, banner)
    assert re.search(r"send_created_sales_order\s+queue sales-orders", banner)
    assert re.search(r"renew_subscriptions\s+timer %SUBSCRIPTION_RENEWAL_SCHEDULE% = ", banner)
    assert "settings:  " in banner and "local.settings" in banner
    assert re.search(r"PUBLIC_BASE_URL = http://127\.0\.0\.1:\d+\s+\(make run\)", banner)
    assert re.search(r"ITEM_PULL_SCHEDULE = 0 0 0 1 1 \*\s+\(environment\)", banner)  # the test's override
    assert "NAME=value make run" in banner

    for _ in range(4):
        assert requests.get(f"{run.url}/api/health", timeout=30).status_code == 200

    def prefixed() -> set[str] | None:
        hosts = set(re.findall(r"^\[(host-\d)\] .*health", run.output, re.M))
        return hosts if len(hosts) == 2 else None

    wait_until(prefixed, timeout=60, what=f"both hosts' log lines, prefixed:\n{run.output}")
