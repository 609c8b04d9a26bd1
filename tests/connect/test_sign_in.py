"""Authorization-code sign-in through the local host against the Entra/BC emulator."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.runtime import get_runtime
from devtools.emulator.seed import CRONUS_UK_ID, CRONUS_USA_ID
from tests.connect.browser import sign_in


def test_sign_in_stores_tokens_and_lists_the_companies(code_flow_host: Callable[..., Any], emulator: Any) -> None:
    host = code_flow_host()
    result = sign_in(host, emulator)
    assert result.page.status_code == 200, result.page.text
    assert "CRONUS UK Ltd." in result.page.text and "CRONUS USA, Inc." in result.page.text
    companies = get_runtime().bc().get("companies")["value"]
    assert {c["id"] for c in companies} == {CRONUS_UK_ID, CRONUS_USA_ID}
