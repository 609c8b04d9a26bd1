"""In-process access to the BC API emulator for tests (dev tooling, never deployed): a `BCApi` with a
stand-in token check and a werkzeug test client that adds the bearer token and the base URL."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from werkzeug.test import Client, TestResponse

from devtools.emulator.bc_api import BCApi
from devtools.emulator.clock import Clock
from devtools.emulator.config import EmulatorConfig
from devtools.emulator.entra import InvalidToken
from devtools.emulator.seed import CRONUS_UK_ID, TENANT_DOMAIN

TEST_TOKEN = "test-token"
TEST_OID = "0d0c0b0a-0000-4000-8000-000000000001"


def make_api(**overrides: Any) -> BCApi:
    """A demo-seeded `BCApi` accepting the bearer token `TEST_TOKEN` (any other → InvalidToken).
    `overrides` are EmulatorConfig fields; `tid=` sets the token's tenant."""
    tid = overrides.pop("tid", None)
    config = replace(EmulatorConfig(), **overrides)
    tenant = tid or config.tenants.get(TENANT_DOMAIN) or next(iter(config.tenants.values()))

    def validate(token: str) -> dict[str, Any]:
        if token != TEST_TOKEN:
            raise InvalidToken("The token is malformed.")
        return {"tid": tenant, "oid": TEST_OID, "appid": "test"}

    return BCApi(config, Clock(), validate)


class BCClient:
    """werkzeug test client for a `BCApi`: paths are relative to
    `/v2.0/{tenant}/{environment}/api/v2.0/`; `company()` prefixes `companies({id})/`."""

    def __init__(self, api: BCApi, tenant: str = TENANT_DOMAIN, environment: str = "production") -> None:
        self.api = api
        self.client = Client(api)
        self.base = f"/v2.0/{tenant}/{environment}/api/v2.0/"
        self.token = TEST_TOKEN

    def company(self, path: str = "", company_id: str = CRONUS_UK_ID) -> str:
        """`companies({id})/<path>` (default: CRONUS UK in production)."""
        return f"companies({company_id})/{path}" if path else f"companies({company_id})"

    def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> TestResponse:
        """Call the API; absolute paths (`/...` or `http://...`) are used as given."""
        url = path if path.startswith(("/", "http://")) else self.base + path
        all_headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        all_headers.update(headers or {})
        return self.client.open(url, method=method, json=json, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        """GET."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> TestResponse:
        """POST JSON."""
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any, etag: str | None = "*", **kwargs: Any) -> TestResponse:
        """PATCH JSON with `If-Match: etag` (None: no If-Match)."""
        headers = {"If-Match": etag} if etag else {}
        return self.request("PATCH", path, json=json, headers=headers, **kwargs)

    def delete(self, path: str, etag: str | None = "*", **kwargs: Any) -> TestResponse:
        """DELETE with `If-Match: etag` (None: no If-Match)."""
        headers = {"If-Match": etag} if etag else {}
        return self.request("DELETE", path, headers=headers, **kwargs)
