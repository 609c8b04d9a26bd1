"""No token, secret or authorization code in logs, tables or responses during a full sign-in,
BC calls and a refresh."""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from connector.runtime import get_runtime
from tests.auth.browser import PAST_TOKEN_LIFETIME, secrets_of, sign_in, stored_cache, table_rows
from tests.conftest import CLIENT_SECRET, TEST_ENCRYPTION_KEY

BROWSER = "browser"  # the stand-in browser's own HTTP logging shows the callback URL; it is not ours


def log_text(records: list[logging.LogRecord]) -> str:
    lines = []
    for record in records:
        if record.threadName.startswith(BROWSER):
            continue
        lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")
    return "\n".join(lines)


def test_no_secret_in_logs_tables_or_responses(code_flow_host: Callable[..., Any], emulator: Any,
                                               azurite: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host = code_flow_host()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=BROWSER) as browser:
        signed_in = browser.submit(sign_in, host, emulator).result()
        assert signed_in.page.status_code == 200
        runtime = get_runtime()
        runtime.bc().get("companies")
        first = stored_cache(runtime.storage)
        emulator.clock.advance(PAST_TOKEN_LIFETIME)
        runtime.bc().get("companies")  # 401, refresh, retry
        second = stored_cache(runtime.storage)
        status = browser.submit(requests.get, f"{host.url}/api/status", timeout=30).result()
    assert first and second and secrets_of(first) != secrets_of(second)

    secrets = secrets_of(first) | secrets_of(second) | {
        CLIENT_SECRET, TEST_ENCRYPTION_KEY, signed_in.callback_params["code"]}
    logs = log_text(caplog.records)
    rows = str(table_rows(azurite.connection_string))
    assert "companies" in logs  # the capture did see the connector's and libraries' logging
    for secret in secrets:
        assert secret not in logs
        assert secret not in rows
        assert secret not in status.text
        assert secret not in signed_in.page.text
